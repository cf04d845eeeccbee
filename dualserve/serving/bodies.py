"""Request bodies: the one reader every frontend uses, bodies read ahead of an app, a client that left.

:func:`read_body` (from a WSGI input stream) and :func:`aread_body` (from ASGI ``receive``)
apply the same rules, once: a declared ``Content-Length`` over the limit is a 413 before a byte is
read; a body, declared or chunked, is read one byte past the limit to know it is over (413); a
body that ends short of its ``Content-Length`` is a 400 (the client left: nothing runs); a body
the server's parser refuses (a malformed chunk) is a 400 too, never a 500.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from ..core.reply import Reply, body_malformed, body_too_large, error_reply

__all__ = [
    "SPOOL_SIZE",
    "ClientDisconnected",
    "Spool",
    "aread_body",
    "body_incomplete",
    "declared_length",
    "read_body",
    "receive_body",
    "refused_body",
]

#: Bytes asked of a WSGI input at a time.
READ_SIZE = 65536

#: Request body bytes kept in memory; past them a body read ahead goes to a temp file.
SPOOL_SIZE = 1024 * 1024
logger = logging.getLogger("dualserve")


class Spool:
    """Bytes kept in memory up to ``size``, then in a temp file: a request body read ahead of
    the app. If the disk refuses them (full, a file size limit), they come back to memory: the
    body is capped by ``max_body_size`` anyway, and an upload the app spools itself then gets
    its ``507``, as it did before bodies were read ahead."""

    def __init__(self, size: int = SPOOL_SIZE) -> None:
        self.size = size
        self._memory = io.BytesIO()  # the bytes while there is no disk file
        self._disk: io.FileIO | None = None
        self._disk_refused = False

    def write(self, data: bytes | bytearray) -> None:
        if self._disk is None and not self._disk_refused and self._memory.tell() + len(data) > self.size:
            self._to_disk()
        if self._disk is None:
            self._memory.write(data)
        else:
            self._write_disk(data)

    def take(self) -> IO[bytes]:
        """The bytes written, from the first; the caller closes the file."""
        if self._disk is not None:
            self._disk.seek(0)
            return io.BufferedReader(self._disk)
        self._memory.seek(0)
        return self._memory

    def close(self) -> None:
        self._memory.close()
        if self._disk is not None:
            self._disk.close()

    def _to_disk(self) -> None:
        try:
            self._disk = tempfile.TemporaryFile(buffering=0)
        except OSError as exc:
            self._refused(exc)
            return
        memory, self._memory = self._memory, io.BytesIO()
        self._write_disk(memory.getvalue())
        memory.close()

    def _write_disk(self, data: bytes | bytearray) -> None:
        assert self._disk is not None
        view = memoryview(data)
        try:
            while view:
                # Unbuffered: when a write fails, the bytes it returned are all that were written.
                view = view[self._disk.write(view) or 0 :]
        except OSError as exc:
            self._disk.seek(0)
            self._memory = io.BytesIO(self._disk.readall())
            self._memory.seek(0, io.SEEK_END)
            self._memory.write(view)
            self._disk.close()
            self._disk = None
            self._refused(exc)

    def _refused(self, exc: OSError) -> None:
        self._disk_refused = True
        logger.warning("A request body is kept in memory: the disk refused it (%s)", exc)


class ClientDisconnected(ConnectionError):
    """The client went away; raised into the app that was still sending to it."""


def declared_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` value as a number; ``None`` when absent or not digits (chunked, say)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return int(text) if text.isdigit() else None


def body_incomplete() -> Reply:
    """400: the body ended before its Content-Length, so the client is gone or broken."""
    return error_reply(400, "The request body ended before its Content-Length.")


def refused_body(exc: Exception) -> Reply:
    """The answer to a body the server's input stream refused while it was read: the client left
    (400, incomplete), or the body is malformed (gunicorn's ParseException subclasses, a bad chunk
    for Werkzeug's dev server: 400 with the reason)."""
    if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in ("NoMoreData", "ClientDisconnected"):
        return body_incomplete()
    return body_malformed(str(exc))


def read_body(read: Callable[[int], bytes], declared: int | None, limit: int) -> bytes | Reply:
    """The whole body from ``read`` (a WSGI input's), or the answer to one that cannot be taken."""
    if declared is not None and declared > limit:
        return body_too_large(limit)
    body = bytearray()
    try:
        # A chunked body has no length to check first: read one byte past the limit to know.
        while len(body) <= limit and (chunk := read(min(READ_SIZE, limit + 1 - len(body)))):
            body += chunk
    except Exception as exc:
        return refused_body(exc)
    return _checked(body, declared, limit)


async def aread_body(receive: Callable[[], Awaitable[Any]], declared: int | None, limit: int) -> bytes | Reply | None:
    """The whole body from ASGI ``receive``, the answer to one that cannot be taken, or ``None``
    when the client disconnected before it was complete (nobody is left to answer)."""
    if declared is not None and declared > limit:
        return body_too_large(limit)
    body = bytearray()
    if not await receive_body(receive, body.extend, limit + 1):
        return None
    # The body ended short of its Content-Length (as Starlette's test client and the a2wsgi mount
    # in Flask deliver it): the Flask frontend's answer, not a run on half a body.
    return _checked(body, declared, limit)


async def receive_body(receive: Callable[[], Awaitable[Any]], write: Callable[[bytes], object], keep: int) -> bool:
    """Receive an ASGI request body into ``write``, at most ``keep`` bytes of it (the rest is not
    read: one byte past a limit tells a body over it); False if the client disconnected first.
    The FastAPI frontend reads with it, and so does the Flask mount before a thread takes the call."""
    size = 0
    while size < keep:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        chunk: bytes = message.get("body", b"")
        if size + len(chunk) > keep:
            chunk = chunk[: keep - size]
        write(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return True


def _checked(body: bytearray, declared: int | None, limit: int) -> bytes | Reply:
    if len(body) > limit:
        return body_too_large(limit)
    if declared is not None and len(body) < declared:
        return body_incomplete()
    return bytes(body)
