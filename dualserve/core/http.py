"""HTTP rules: a :class:`~dualserve.core.returns.Result` and a request become one :class:`Reply`.

No web framework. This is where every visible header is decided (type, length, validators,
ranges, caching, disposition) and where Range and conditional requests are answered, once, so
FastAPI and Flask cannot disagree. Header *parsing* is Werkzeug's sans-IO ``werkzeug.http``
(the same helpers Flask's ``send_file`` relies on), so no HTTP grammar is written by hand here.

Decisions the RFCs leave open, taken the same way on every frontend:

- Range and conditional requests apply to ``GET`` and ``HEAD`` of media results (bytes, files,
  images). A ``POST`` runs the pipeline and answers in full; streams and JSON have no validators.
- A Range header that does not parse, names another unit, or asks for several ranges is ignored:
  200 with the full body (RFC 9110 lets a server ignore Range). One range wholly past the end
  is 416 with ``Content-Range: bytes */N``.
- Never spliced: only a *stored* result (``stored``: a file kept on disk, a cached or a job's
  result from the store) is sent with ``Accept-Ranges: bytes`` and answers Range and If-Range.
  Any other (bytes a run made, an image encoded for this request, a temp file the run created)
  may differ on the next run. It is sent with ``Accept-Ranges: none`` and its Range is ignored,
  200 with this run's whole body, with one exception: a *continuation*, one byte range from past
  the first byte with no If-Range, is 409 (a JSON answer's too, though it offers no ranges).
  That is what ``curl -C -``, ``wget -c`` and ``aria2c -c`` send, holding the head of another
  run's answer, and wget takes a 200 as the same bytes: it skips as many as it holds and appends
  the rest, a spliced file. A 409 is a failure to all three (a 416 would be "already
  complete"), and their partial file stays as it was.
  With If-Range the client replaces its copy with a 200, so the 200 stands; even with this run's
  own ETag the Range is ignored: one rule that needs no hash to hold, and the run, the costly
  part, is done by then. If-None-Match and 304 stay: a 304 only says the client's copy equals
  this run's bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from email.utils import formatdate
from urllib.parse import quote

import xxhash
from werkzeug.datastructures import Range
from werkzeug.http import parse_date, parse_etags, parse_range_header

from ..media import safe_filename
from .reply import FileBody, Reply, StreamBody, error_reply, for_method
from .request import Request
from .returns import BytesResult, PathResult, Result, StreamResult

__all__ = ["content_disposition", "etag_for_bytes", "render"]

_SAFE_METHODS = ("GET", "HEAD")


def render(result: Result, request: Request) -> Reply:
    """The reply for ``request`` given what ``run_api`` produced.

    A ``StreamResult`` must already be primed (its media type known and its chunks bytes).
    """
    cleanups: list[Callable[[], object]] = []
    if isinstance(result, PathResult) and result.delete_after:
        cleanups.append(result.path.unlink)
    if isinstance(result, StreamResult):
        reply = Reply(result.status_code, _headers(result), StreamBody(result.chunks), cleanups=cleanups)
    elif isinstance(result, (BytesResult, PathResult)):
        reply = _render_representation(result, request, cleanups)
    else:
        raise TypeError(f"render() cannot send a {type(result).__name__}.")
    return for_method(reply, request.method)


def _render_representation(
    result: BytesResult | PathResult, request: Request, cleanups: list[Callable[[], object]]
) -> Reply:
    size = len(result.body) if isinstance(result, BytesResult) else result.size
    validators: list[tuple[str, str]] = []
    etag = None
    if result.is_media:
        etag = etag_for_bytes(result.body) if isinstance(result, BytesResult) else _etag_for_file(result)
        validators.append(("etag", etag))
        if isinstance(result, PathResult):
            validators.append(("last-modified", formatdate(result.mtime, usegmt=True)))
    mtime = int(result.mtime) if isinstance(result, PathResult) else None

    stored = result.stored and not (isinstance(result, PathResult) and result.delete_after)
    start, stop = 0, size
    status = result.status_code
    if request.method in _SAFE_METHODS and status == 200:
        if etag is not None:
            precondition = _preconditions(request, etag, mtime)
            if precondition == 412:
                return error_reply(412, "Precondition Failed", cleanups=cleanups)
            if precondition == 304:
                # RFC 9110 15.4.5: the ETag and caching headers a 200 would carry, no content headers.
                kept = [h for h in _headers(result, size=None) if h[0] not in ("content-type", "content-disposition")]
                return Reply(304, [("etag", etag), *kept], b"", cleanups=cleanups)
        if not stored:
            # JSON too: it has no ranges to offer, but wget -c would append to it all the same.
            if _continues(request):
                return error_reply(409, _NOT_RESUMABLE, [("accept-ranges", "none")], cleanups)
        elif etag is not None:
            span = _byte_range(request, size, etag, mtime)
            if span is None:
                return error_reply(416, "Range Not Satisfiable", [("content-range", f"bytes */{size}")], cleanups)
            if span is not _WHOLE:
                start, stop = span
                status = 206
    headers = _headers(result, size=stop - start)
    if etag is not None:
        headers[2:2] = [("accept-ranges", "bytes" if stored else "none"), *validators]
    if status == 206:
        headers.insert(2, ("content-range", f"bytes {start}-{stop - 1}/{size}"))
    body: bytes | FileBody
    if isinstance(result, BytesResult):
        body = result.body if (start, stop) == (0, size) else result.body[start:stop]
    else:
        body = FileBody(result.path, start, stop - start)
    return Reply(status, headers, body, cleanups=cleanups)


def _headers(result: Result, size: int | None = None) -> list[tuple[str, str]]:
    """Content-Type and Content-Length first, then caching, disposition and the wrapper's own."""
    headers = [("content-type", result.media_type or "application/octet-stream")]
    if size is not None:
        headers.append(("content-length", str(size)))
    if result.is_media and not any(name.lower() == "cache-control" for name, _ in result.headers):
        headers.append(("cache-control", _cache_control(result)))
    if result.filename is not None:
        headers.append(("content-disposition", content_disposition(result.disposition, result.filename)))
    # A browser must not guess another type than the one sent (an upload echoed as HTML, a
    # JSON answer that repeats what a client sent) ...
    headers.append(("x-content-type-options", "nosniff"))
    if result.is_media:
        # ... and an SVG or HTML result shown inline must not run script in the API's origin,
        # unless the wrapper sets its own policy.
        base = (result.media_type or "").split(";", 1)[0].strip().lower()
        own_policy = any(name.lower() == "content-security-policy" for name, _ in result.headers)
        if base in _ACTIVE_TYPES and result.disposition == "inline" and not own_policy:
            headers.append(("content-security-policy", "sandbox"))
    headers += result.headers
    return headers


def _cache_control(result: Result) -> str:
    if result.max_age is not None:
        return f"public, max-age={result.max_age}"
    # A stream has no validator to revalidate with, and may differ on every run: not to be stored.
    # Bytes and files have an ETag: stored, but asked again each time ("no-cache").
    return "no-store" if isinstance(result, StreamResult) else "no-cache"


# Types a browser runs script from when it shows them.
_ACTIVE_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"})


def _preconditions(request: Request, etag: str, mtime: int | None) -> int | None:
    """RFC 9110 section 13.2.2, in its order: 412, 304, or None to go on."""
    if_match = request.headers.get("if-match")
    if if_match is not None:
        if not parse_etags(if_match).contains(_unquote(etag)):
            return 412
    elif mtime is not None:
        since = parse_date(request.headers.get("if-unmodified-since"))
        if since is not None and mtime > since.timestamp():
            return 412
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return 304 if parse_etags(if_none_match).contains_weak(_unquote(etag)) else None
    if mtime is not None:
        since = parse_date(request.headers.get("if-modified-since"))
        if since is not None and mtime <= since.timestamp():
            return 304
    return None


_WHOLE = (0, -1)


def _byte_range(request: Request, size: int, etag: str, mtime: int | None) -> tuple[int, int] | None:
    """The ``(start, stop)`` of the one range to send, ``_WHOLE`` for a 200, or None for 416."""
    header = request.headers.get("range")
    if header is None:
        return _WHOLE
    if_range = request.headers.get("if-range")
    if if_range is not None and not _if_range_holds(if_range, etag, mtime):
        return _WHOLE
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return _WHOLE
    start, stop = parsed.ranges[0]
    if stop is None and start < -size:
        # A suffix longer than the body selects all of it (RFC 9110 14.1.2); Werkzeug's
        # range_for_length() found it unsatisfiable, a 416 for "bytes=-500" of 100 bytes.
        parsed = Range("bytes", [(-size, None)]) if size else parsed
    # Satisfiable ranges are 206 even when they cover the whole body, as RFC 9110 has it.
    return parsed.range_for_length(size)


_NOT_RESUMABLE = (
    "This answer is made anew by every run and is not stored, so a download of it cannot be resumed: "
    "request it again without Range."
)


def _continues(request: Request) -> bool:
    """Whether the request continues a download it will append to: one byte range from past the
    first byte, and no If-Range (with one, a 200 replaces the client's copy)."""
    header = request.headers.get("range")
    if header is None or request.headers.get("if-range") is not None:
        return False
    parsed = parse_range_header(header)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1 and parsed.ranges[0][0] > 0


def _if_range_holds(header: str, etag: str, mtime: int | None) -> bool:
    # RFC 9110 13.1.5: a DQUOTE in the first three characters makes it an entity-tag, which must
    # match ours strongly: byte for byte, so never a weak "W/" one. Werkzeug's parser also took
    # an unquoted tag or a lower-case "w/" prefix as our strong tag, and answered 206.
    if '"' in header[:3]:
        return header == etag
    date = parse_date(header)
    return date is not None and mtime is not None and int(date.timestamp()) == mtime


def _unquote(etag: str) -> str:
    return etag[1:-1]


def _etag_for_file(result: PathResult) -> str:
    return f'"{result.size:x}-{int(result.mtime * 1_000_000):x}"'


def etag_for_bytes(body: bytes) -> str:
    """A strong validator for an in-memory body: its length and its 128-bit XXH3 hash.

    Not a security hash, and it needs not be one: it only tells versions of a body apart. XXH3
    hashes 100 KB in about a microsecond where SHA-256 took 50, a third of a whole request.
    """
    return f'"{len(body):x}-{xxhash.xxh3_128_hexdigest(body)}"'


def content_disposition(disposition: str, filename: str) -> str:
    """``inline`` or ``attachment`` with an ASCII ``filename`` and, when needed, RFC 5987's ``filename*``."""
    # A file's own name reaches here unchecked (a Linux name may hold "\n" or "\\"), so it is made
    # safe here too. "Vögel" falls back to "Vogel"; what has no ASCII form, and quotes or
    # backslashes that some clients mis-parse inside a quoted string, become "_"; so does a "/"
    # that NFKD made of a fullwidth one ("a／b"). filename* keeps the exact (safe) name.
    filename = safe_filename(filename)
    decomposed = unicodedata.normalize("NFKD", filename)
    ascii_name = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\/' else "_" for ch in decomposed if not unicodedata.combining(ch)
    )
    if not ascii_name.strip(". "):
        ascii_name = "download"  # "‥" decomposes to "..", a lone combining mark to nothing
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
