"""HTTP rules: a :class:`~dualserve.results.Result` and a request become one :class:`Reply`.

No web framework. This is where every visible header is decided (type, length, validators,
ranges, caching, disposition), once, so FastAPI and Flask cannot disagree.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from email.utils import formatdate
from urllib.parse import quote

from .replies import FileBody, Reply, StreamBody
from .requests import Request
from .results import BytesResult, PathResult, Result, StreamResult

__all__ = ["content_disposition", "etag_for_bytes", "render"]


def render(result: Result, request: Request) -> Reply:
    """The reply for ``request`` given what ``run_api`` produced.

    A ``StreamResult`` must already be primed (its media type known and its chunks bytes).
    """
    headers: list[tuple[str, str]] = [("content-type", result.media_type or "application/octet-stream")]
    body: bytes | FileBody | StreamBody
    cleanups: list[Callable[[], object]] = []
    if isinstance(result, BytesResult):
        headers.append(("content-length", str(len(result.body))))
        if result.is_media:
            headers += [("accept-ranges", "bytes"), ("etag", etag_for_bytes(result.body))]
        body = result.body
    elif isinstance(result, PathResult):
        headers += [
            ("content-length", str(result.size)),
            ("accept-ranges", "bytes"),
            ("etag", f'"{result.size:x}-{int(result.mtime * 1_000_000):x}"'),
            ("last-modified", formatdate(result.mtime, usegmt=True)),
        ]
        body = FileBody(result.path, 0, result.size)
        if result.delete_after:
            cleanups.append(result.path.unlink)
    elif isinstance(result, StreamResult):
        body = StreamBody(result.chunks)
    else:
        raise TypeError(f"render() cannot send a {type(result).__name__}.")
    if result.is_media:
        cache = "no-cache" if result.max_age is None else f"public, max-age={result.max_age}"
        if not any(name.lower() == "cache-control" for name, _ in result.headers):
            headers.append(("cache-control", cache))
    if result.filename is not None:
        headers.append(("content-disposition", content_disposition(result.disposition, result.filename)))
    headers += result.headers
    reply = Reply(result.status_code, headers, body, cleanups=cleanups)
    if request.method == "HEAD":
        _drop_body(reply)
    return reply


def _drop_body(reply: Reply) -> None:
    # HEAD: the headers GET would get, no body; a stream still has to be closed.
    if isinstance(reply.body, StreamBody):
        chunks = reply.body.chunks
        reply.cleanups.insert(0, chunks.aclose if hasattr(chunks, "aclose") else getattr(chunks, "close", _nothing))
    reply.body = b""


def _nothing() -> None:
    return None


def etag_for_bytes(body: bytes) -> str:
    """A strong validator for an in-memory body: its length and a SHA-256 prefix."""
    return f'"{len(body):x}-{hashlib.sha256(body).hexdigest()[:32]}"'


def content_disposition(disposition: str, filename: str) -> str:
    """``inline`` or ``attachment`` with an ASCII ``filename`` and, when needed, RFC 5987's ``filename*``."""
    # "Vögel" falls back to "Vogel"; what has no ASCII form, and quotes or backslashes that some
    # clients mis-parse inside a quoted string, become "_". filename* keeps the exact name.
    decomposed = unicodedata.normalize("NFKD", filename)
    ascii_name = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in decomposed if not unicodedata.combining(ch)
    )
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
