"""``CorsPolicy``: which web pages on other origins may call the API. Standard library only.

Implements the server's half of the CORS protocol of the Fetch standard
(https://fetch.spec.whatwg.org/#http-cors-protocol): a CORS-preflight request (``OPTIONS`` with
``Origin`` and ``Access-Control-Request-Method``) gets its answer from :meth:`CorsPolicy.preflight`,
before any route or key check (a browser never sends credentials or custom headers on a
preflight), and every other answer gets the headers :meth:`CorsPolicy.headers` returns, added with
:func:`add_to`. The policy is decided here once, so every frontend sends the same bytes; it is a
core function the frontends call, not a framework middleware (which would switch their fast paths
off).

No answer ever carries ``Access-Control-Allow-Credentials``: dualserve uses no cookies and no HTTP
authentication the browser manages, API keys travel in request headers the preflight allows
(``Authorization``, ``X-API-Key``). So ``*`` is never combined with credentials, which Fetch forbids
and browsers refuse.

Origins are compared exactly, as Fetch compares them: a browser sends the RFC 6454 serialization
(scheme and host in lower case, no default port), so configured origins are normalized to that form
once, and a request's ``Origin`` is looked up as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .reply import Reply, error_reply
from .request import Request

__all__ = [
    "ALLOWED_HEADERS",
    "ALLOWED_METHODS",
    "EXPOSED_HEADERS",
    "CorsPolicy",
    "add_to",
    "merge_vary",
]

#: The methods the API answers, for ``Access-Control-Allow-Methods``.
ALLOWED_METHODS = ("GET", "HEAD", "POST", "DELETE", "OPTIONS")

#: Every request header the API reads, for ``Access-Control-Allow-Headers``. Listed by name, not
#: ``*``: Fetch's wildcard never covers ``Authorization``. ``Accept`` and ``Range`` are
#: CORS-safelisted only for short, simple values, so a longer ``Accept`` is preflighted too.
ALLOWED_HEADERS = (
    "Accept",
    "Content-Type",
    "Authorization",
    "X-API-Key",
    "Idempotency-Key",
    "Prefer",
    "Range",
    "If-Range",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "Last-Event-ID",
    "X-Request-ID",
)

#: Response headers a page's script may read beyond the CORS-safelisted ones (Fetch hides the
#: rest). Listed by name, not ``*``, which older Safari releases do not understand.
EXPOSED_HEADERS = (
    "Content-Disposition",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Location",
    "Retry-After",
    "Preference-Applied",
    "X-Request-ID",
    "Age",
    "Allow",
    "WWW-Authenticate",
)

# What a preflight's answer depends on, so a cache keeps one answer per combination.
_PREFLIGHT_VARY = ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
_VARY_ORIGIN = ("vary", "Origin")

# RFC 6454 serialization, after lower-casing: scheme "://" host [":" port]; an IPv6 host in brackets.
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?"
)
# RFC 6454 4: a scheme's default port is left out of the serialization a browser sends.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class CorsPolicy:
    """Cross-origin access for ``origins``: exact origins such as ``https://app.example.com``, or ``*``.

    :param origins: each ``scheme://host[:port]`` with no path (case and a default port do not
        matter), or ``*`` alone for any origin.
    :param max_age: how many seconds a browser may keep a preflight's answer.
    :raises ValueError: no origin, an origin that is not ``scheme://host[:port]``, ``null``, or
        ``*`` together with other origins.
    """

    __slots__ = ("_allowed", "_any", "_max_age", "_origins", "_preflights", "_without_origin")

    def __init__(self, origins: Iterable[str], *, max_age: int = 600) -> None:
        if isinstance(origins, str):
            raise TypeError(f"origins is an iterable of origins, such as [{origins!r}], not a string.")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"max_age is a number of seconds, 0 or more, not {max_age!r}.")
        given = [origin.strip() for origin in origins]
        if not given:
            raise ValueError("A CORS policy needs at least one origin (or '*'); leave CORS off instead.")
        self._any = "*" in given
        if self._any and len(set(given)) > 1:
            raise ValueError("The CORS origin '*' already allows every origin: give it alone.")
        # dict.fromkeys: duplicates dropped, order kept (the order they were configured in).
        self._origins: tuple[str, ...] = ("*",) if self._any else tuple(dict.fromkeys(map(_normalize, given)))
        self._max_age = max_age

        # Every header value is built here once; a request only looks its origin up.
        allow_methods = ("access-control-allow-methods", ", ".join(ALLOWED_METHODS))
        allow_headers = ("access-control-allow-headers", ", ".join(ALLOWED_HEADERS))
        expose = ("access-control-expose-headers", ", ".join(EXPOSED_HEADERS))
        age = ("access-control-max-age", str(max_age))

        def preflight(value: str) -> tuple[tuple[str, str], ...]:
            # No Content-Length: RFC 9110 8.6 forbids it on a 204, and Werkzeug and gunicorn strip
            # it, so sending it would make the frontends' bytes differ.
            return (("access-control-allow-origin", value), allow_methods, allow_headers, age, _PREFLIGHT_VARY)

        if self._any:
            # Fetch's advice for a resource open to all (3.2.5, "CORS protocol and HTTP caches"):
            # send "*" on every answer, with an Origin or without, and no Vary, so one cached copy
            # serves every page and every non-browser client alike.
            star = (("access-control-allow-origin", "*"), expose)
            self._without_origin: tuple[tuple[str, str], ...] = star
            self._allowed: dict[str, tuple[tuple[str, str], ...]] = {}
            self._preflights: dict[str, tuple[tuple[str, str], ...]] = {"*": preflight("*")}
        else:
            # The answer names the origin it was asked from, so caches must keep one per Origin,
            # including the answer for no Origin or a foreign one (which names none).
            self._without_origin = (_VARY_ORIGIN,)
            self._allowed = {
                origin: (("access-control-allow-origin", origin), expose, _VARY_ORIGIN) for origin in self._origins
            }
            self._preflights = {origin: preflight(origin) for origin in self._origins}

    @property
    def origins(self) -> tuple[str, ...]:
        """The allowed origins, normalized (``("*",)`` for any)."""
        return self._origins

    @property
    def max_age(self) -> int:
        """Seconds a browser may keep a preflight's answer."""
        return self._max_age

    def __repr__(self) -> str:
        return f"CorsPolicy({list(self._origins)!r}, max_age={self._max_age})"

    def preflight(self, request: Request) -> Reply | None:
        """The answer to a CORS-preflight request, or None if ``request`` is not one.

        An allowed origin gets ``204`` allowing every method and request header the API knows,
        whatever the browser asked for: if it asked for more, the browser refuses the actual
        request itself, which is the right outcome. A foreign origin gets ``403`` with no
        ``Access-Control-*`` header, so the browser refuses too.
        """
        if request.method != "OPTIONS":
            return None
        headers = request.headers
        origin = headers.get("origin")
        if not origin or not headers.get("access-control-request-method"):
            return None  # a plain OPTIONS request: the route answers it
        found = self._preflights.get("*" if self._any else origin)
        if found is None:
            return error_reply(403, "Cross-origin requests from this origin are not allowed.", [_VARY_ORIGIN])
        return Reply(204, list(found))

    def headers(self, request: Request) -> list[tuple[str, str]]:
        """The CORS headers for the answer to ``request`` (any answer but a preflight's); add them
        with :func:`add_to`, which merges ``Vary``."""
        if self._any:
            return list(self._without_origin)  # the same for every request: no lookup at all
        origin = request.headers.get("origin")
        if not origin:
            return list(self._without_origin)
        return list(self._allowed.get(origin, self._without_origin))


def add_to(reply: Reply, extra: Sequence[tuple[str, str]]) -> Reply:
    """``reply`` with the ``extra`` headers (lower-case names) in place of any it had by those
    names, except ``Vary``, whose values are merged into one field by :func:`merge_vary`. Changes
    ``reply`` and returns it.

    A reply that passes a framework's own response through (``reply.passthrough``) does not send
    ``reply.headers``; its frontend must add ``extra`` to that response itself.
    """
    if not extra:
        return reply
    replaced = {name for name, _ in extra if name != "vary"}
    # A new list, never the reply's own: a cached reply may share its header list between requests.
    headers = [header for header in reply.headers if header[0].lower() not in replaced]
    for name, value in extra:
        if name == "vary":
            headers = merge_vary(headers, value)
        else:
            headers.append((name, value))
    reply.headers = headers
    return reply


def merge_vary(headers: Iterable[tuple[str, str]], value: str) -> list[tuple[str, str]]:
    """``headers`` with ``value``'s field names added to their ``Vary``, as one ``vary`` field.

    The merged field stands where the first ``Vary`` was (at the end if there was none); a name
    already there (in any case) is not repeated, and ``*`` (varies on everything) absorbs the rest,
    as RFC 9110 12.5.5 defines it.
    """
    merged: list[tuple[str, str]] = []
    names: list[str] = []
    at = -1
    for name, field in headers:
        if name.lower() == "vary":
            if at < 0:
                at = len(merged)
                merged.append(("vary", ""))  # a place held for the merged field
            names.extend(field.split(","))
        else:
            merged.append((name, field))
    names.extend(value.split(","))
    seen: dict[str, str] = {}
    for name in names:
        name = name.strip()
        if name:
            seen.setdefault(name.lower(), name)
    if not seen:
        return merged if at < 0 else merged[:at] + merged[at + 1 :]
    field = "*" if "*" in seen else ", ".join(seen.values())
    if at < 0:
        merged.append(("vary", field))
    else:
        merged[at] = ("vary", field)
    return merged


def _normalize(origin: str) -> str:
    """``origin`` as a browser serializes it (RFC 6454 6.1), or ValueError saying what is wrong."""
    if origin == "null":
        raise ValueError(
            "The CORS origin 'null' cannot be allowed: sandboxed frames and file: pages send it, so any page can."
        )
    if not origin.isascii():
        raise ValueError(
            f"The CORS origin {origin!r} is not ASCII: write an international domain name in its"
            " punycode form (xn--...), as browsers send it."
        )
    lowered = origin.lower()
    found = _ORIGIN.fullmatch(lowered)
    if found is None:
        raise ValueError(f"The CORS origin {origin!r} is not scheme://host[:port]{_diagnosis(lowered)}.")
    scheme, host, port = found["scheme"], found["host"], found["port"]
    if port is None:
        return lowered
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"The CORS origin {origin!r} has no valid port: a port is 1 to 65535.")
    if _DEFAULT_PORTS.get(scheme) == number:
        return f"{scheme}://{host}"  # browsers leave a default port out
    return f"{scheme}://{host}:{number}"


def _diagnosis(origin: str) -> str:
    """What most likely went wrong, with the origin it should have been, for the error message."""
    if "://" not in origin:
        return f": it has no scheme, such as 'https://{origin.rstrip('/')}'"
    parts = urlsplit(origin)
    example = f"'{parts.scheme}://{parts.netloc.rpartition('@')[2]}'"
    if "@" in parts.netloc:
        return f": it has a user name, which an origin never has; such as {example}"
    if parts.path or parts.query or parts.fragment or origin.endswith(("?", "#")):
        return f": it has a path, query or fragment (a trailing '/' too), which an origin never has; such as {example}"
    return ", such as 'https://app.example.com'"
