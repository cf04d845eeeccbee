"""``ApiKeys``: which requests may run pipelines and jobs. Standard library only.

With keys configured (``--api-key``, or ``DUALSERVE_API_KEYS``), every route but the open ones
(:data:`OPEN_ENDPOINTS`: ``/status``, ``/``, ``/openapi.json``, ``/docs``, ``/ui``) needs one, sent
as ``Authorization: Bearer KEY`` (RFC 6750) or ``X-API-Key: KEY``; otherwise the answer is ``401``
with ``WWW-Authenticate: Bearer``. A CORS preflight is answered before this check: a browser
never sends a key on one.

The keys are kept only as SHA-256 digests, and a presented key is compared with
:func:`hmac.compare_digest` against every one of them, with no early exit: the time taken says
neither which key matched nor whether one did, and comparing digests of equal length hides the
keys' lengths too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from .reply import Reply, error_reply
from .request import Request

__all__ = ["OPEN_ENDPOINTS", "ApiKeys", "keys_from_environment", "needs_key"]

#: The route endpoints (:data:`~dualserve.core.routes.ROUTES`) that answer without a key: the
#: service's status, the home page, the OpenAPI document and the pages (/docs, /ui, the favicon).
OPEN_ENDPOINTS = frozenset({"status", "home", "openapi", "page"})

_WWW_AUTHENTICATE = ("www-authenticate", "Bearer")
_NO_KEY = "This route needs an API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
_WRONG_KEY = "The API key is not valid."
# Separates the public id of a key from the digest it is checked against, so the id is not a
# plain SHA-256 of the key that a table of common secrets' digests could look up.
_IDENTITY_PREFIX = b"dualserve api key id\x00"


def needs_key(endpoint: str) -> bool:
    """Whether the route endpoint ``endpoint`` needs a key (when keys are configured). An endpoint
    this module does not know needs one: a new route is closed until it is listed as open."""
    return endpoint not in OPEN_ENDPOINTS


def keys_from_environment(value: str | None) -> list[str]:
    """The keys in ``DUALSERVE_API_KEYS``'s ``value``: comma-separated, blanks around them and
    empty entries left out; ``[]`` when unset or empty. :class:`ApiKeys` checks what remains."""
    if not value:
        return []
    return [key for key in (part.strip() for part in value.split(",")) if key]


class ApiKeys:
    """The API keys a request may present.

    :param keys: the keys; blanks around each are dropped, and so are empty ones.
    :raises ValueError: no key remains, or a key has a character other than printable ASCII
        (whitespace, a control character, or a non-ASCII one: frontends decode header values as
        Latin-1, so such a key could never match). The message never quotes a key.
    """

    __slots__ = ("_digests",)

    def __init__(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str):
            raise TypeError("keys is an iterable of keys, such as [key], not a string.")
        stripped = [key.strip() for key in keys]
        for number, key in enumerate(stripped, start=1):
            if key and not all("!" <= character <= "~" for character in key):
                raise ValueError(
                    f"API key number {number} has whitespace, a control character or a non-ASCII character:"
                    " a key is printable ASCII, such as secrets.token_urlsafe(32) makes."
                )
        # The keys themselves are not kept, so neither a repr nor a traceback can show one.
        digests = dict.fromkeys(_digest(key) for key in stripped if key)
        if not digests:
            raise ValueError("No API key was given: give at least one, or leave keys off.")
        self._digests: tuple[bytes, ...] = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<ApiKeys: {len(self._digests)} key(s)>"

    def check(self, request: Request) -> Reply | None:
        """None if ``request`` presents one of the keys, else the ``401`` to answer it with."""
        presented = _presented(request)
        if presented is None:
            return error_reply(401, _NO_KEY, [_WWW_AUTHENTICATE])
        if not self._matches(presented):
            return error_reply(401, _WRONG_KEY, [_WWW_AUTHENTICATE])
        return None

    def identity(self, request: Request) -> str | None:
        """A stable id of the key ``request`` presents (12 hex digits), the same in every process,
        to count requests per key; None if it presents none of the keys, so a client cannot dodge
        a per-key limit by sending a new wrong key each time.

        The id does not reveal a key made of random bytes. A guessable key could be found from it
        by trying candidates, as it could be from any digest: make keys with ``secrets``.
        """
        presented = _presented(request)
        if presented is None or not self._matches(presented):
            return None
        return hashlib.sha256(_IDENTITY_PREFIX + _encode(presented)).hexdigest()[:12]

    def _matches(self, presented: str) -> bool:
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            # Every key is compared, and `|` (not `or`) evaluates each comparison: no early exit.
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def _presented(request: Request) -> str | None:
    """The key ``request`` presents: a Bearer credential first, else X-API-Key; None if neither.

    Another ``Authorization`` scheme (Basic, for a proxy in front) or an empty Bearer does not hide
    an X-API-Key. Only one key is checked, so the comparisons stay one per configured key.
    """
    headers = request.headers
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if credential and scheme.lower() == "bearer":
            return credential
    key = headers.get("x-api-key")
    if key:
        key = key.strip()
    return key or None


def _encode(key: str) -> bytes:
    # Header values arrive decoded as Latin-1, so any str can come; surrogatepass never raises.
    return key.encode("utf-8", "surrogatepass")


def _digest(key: str) -> bytes:
    return hashlib.sha256(_encode(key)).digest()
