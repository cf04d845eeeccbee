"""Flask (WSGI) inside FastAPI (ASGI): a2wsgi's ``WSGIMiddleware``, with what the mount must not inherit fixed.

:class:`WSGIMount` (Flask inside FastAPI) is ``a2wsgi.WSGIMiddleware`` plus:

- the request body is read whole on the event loop (a temp file past 1 MiB, at most
  ``max_body_size + 1`` bytes) before a thread takes the call: a slow upload holds a socket, not
  one of the threads (a2wsgi's thread read it from the loop as it came, so 64 slow clients
  stopped the Flask side); a client that leaves before its body is whole runs nothing;
- a client that disconnects stops the Flask side: the WSGI iterable is closed at its next chunk
  and the thread is freed (a2wsgi kept iterating, or blocked forever on a full send queue);
- ``wsgi.input_terminated`` is set, so Werkzeug reads a chunked request body to its end
  (without it, no ``Content-Length`` means an empty body);
- ``SCRIPT_NAME`` is the mount prefix, even when the process environment has a ``SCRIPT_NAME``;
- the thread pool size is a parameter, not a hidden ten;
- a ``wsgi.file_wrapper`` that reads 1 MiB at a time (``send_file`` read 8 KiB through plain a2wsgi).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from typing import IO, Any

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder, build_environ

from ..serving.bodies import ClientDisconnected, Spool
from ..serving.service import DEFAULT_MAX_BODY_SIZE

__all__ = ["FileWrapper", "WSGIMount"]

Message = dict[str, Any]


class WSGIMount(WSGIMiddleware):
    """Serve a WSGI app from an ASGI server. ``threads`` bounds the WSGI calls running at once.

    A request body is read whole on the event loop before a thread takes the call, up to
    ``max_body_size + 1`` bytes: a longer chunked body reaches the app cut there, for it to answer
    413 (dualserve's Flask app does), and one whose ``Content-Length`` is over the limit arrives
    empty, its length said by the header."""

    def __init__(
        self,
        app: Any,
        threads: int = 64,
        send_queue_size: int = 10,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        super().__init__(app, workers=threads, send_queue_size=send_queue_size)
        self.max_body_size = max_body_size

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            responder = _WSGIResponder(self.app, self.executor, self.send_queue_size, self.max_body_size)
            return await responder(scope, receive, send)
        return await super().__call__(scope, receive, send)


class _WSGIResponder(WSGIResponder):
    def __init__(self, app: Any, executor: Any, send_queue_size: int, max_body_size: int) -> None:
        super().__init__(app, executor, send_queue_size)
        self.max_body_size = max_body_size
        self.disconnected = False
        # a2wsgi's thread waits for the event loop to take every message, a round trip per
        # chunk; here it only waits when send_queue_size messages are still unsent.
        self.send_queue = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(send_queue_size)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # The body is read here, on the loop, before a thread is taken: a client that sends it
        # slowly holds a socket, never one of the mount's threads (a2wsgi handed the thread a
        # stream fed from the loop, so 64 slow uploads stopped the Flask side).
        body = await self._read_body(scope, receive)
        if body is None:
            return  # the client left before its body was whole: nothing runs
        # From here `receive` only reports the client leaving, which stops the thread at its next chunk.
        watch = self.loop.create_task(self._watch(receive))
        environ: Any = build_environ(scope, body)  # type: ignore[arg-type]
        environ["SCRIPT_NAME"] = scope.get("root_path", "").encode("utf8").decode("latin1")
        environ["wsgi.input_terminated"] = True
        environ["wsgi.file_wrapper"] = FileWrapper
        sender = self.loop.create_task(self.sender(send))
        try:
            await self.loop.run_in_executor(self.executor, self.wsgi, environ, self.start_response)
            await self.send_queue.put(None)
            await sender
        except asyncio.CancelledError:
            self.disconnected = True  # server shutdown: let the thread stop at its next chunk
            raise
        finally:
            watch.cancel()
            if not sender.done():
                sender.cancel()
            body.close()
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])

    async def _read_body(self, scope: Any, receive: Any) -> IO[bytes] | None:
        """The request body, whole (a temp file past SPOOL_SIZE), or ``None`` if the client left.

        At most ``max_body_size + 1`` bytes are kept: the Flask side reads one byte past the limit
        to answer 413. A declared ``Content-Length`` over the limit is not read at all: the Flask
        side answers 413 from the header."""
        limit = self.max_body_size
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return io.BytesIO()
        body = Spool()
        size = 0
        more = True
        try:
            while more and size <= limit:
                message = await receive()
                if message["type"] == "http.disconnect":
                    body.close()
                    self.disconnected = True
                    return None
                chunk: bytes = message.get("body", b"")
                more = message.get("more_body", False)
                if size + len(chunk) > limit + 1:
                    chunk = chunk[: limit + 1 - size]
                # A write to the temp file blocks the loop as briefly as a page-cache write does.
                body.write(chunk)
                size += len(chunk)
        except BaseException:  # cancelled by a server shutting down: the temp file goes now
            body.close()
            raise
        return body.take()

    async def _watch(self, receive: Any) -> None:
        # Body messages past the limit, which the app will not read, are dropped as they come.
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:
            pass  # the server's receive failed: as gone as a disconnect
        self.disconnected = True

    async def sender(self, send: Any) -> None:
        while True:
            message = await self.send_queue.get()
            if message is None:
                return
            if not self.disconnected:
                try:
                    await send(message)
                except OSError:
                    self.disconnected = True
            # Once disconnected, keep draining so a thread waiting for a slot gets free.
            self._slots.release()

    def send(self, message: Any) -> None:
        self._slots.acquire()
        if self.disconnected:
            self._slots.release()
            raise ClientDisconnected("The client disconnected.")
        self.loop.call_soon_threadsafe(self.send_queue.put_nowait, message)

    def wsgi(self, environ: Any, start_response: Any) -> None:
        try:
            super().wsgi(environ, start_response)  # closes the iterable in its own finally
        except ClientDisconnected:
            pass


class FileWrapper:
    """``wsgi.file_wrapper`` for the mount: a2wsgi has none, so ``send_file`` read 8 KiB at a time."""

    def __init__(self, file: Any, block_size: int = 8192) -> None:
        self.file = file
        self.block_size = max(block_size, 1024 * 1024)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.file.read(self.block_size):
            yield chunk

    def close(self) -> None:
        self.file.close()
