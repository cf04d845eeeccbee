"""a2wsgi, with the defects the mounts must not inherit fixed in a thin layer of subclasses.

:class:`WSGIMount` (Flask inside FastAPI) is ``a2wsgi.WSGIMiddleware`` plus:

- a client that disconnects stops the Flask side: the WSGI iterable is closed at its next chunk
  and the thread is freed (a2wsgi kept iterating, or blocked forever on a full send queue);
- ``wsgi.input_terminated`` is set, so Werkzeug reads a chunked request body to its end
  (without it, no ``Content-Length`` means an empty body);
- ``SCRIPT_NAME`` is the mount prefix, even when the process environment has a ``SCRIPT_NAME``;
- the thread pool size is a parameter, not a hidden ten;
- a ``wsgi.file_wrapper`` that reads 1 MiB at a time (``send_file`` read 8 KiB through plain a2wsgi).

:class:`ASGIMount` (FastAPI inside Flask) is ``a2wsgi.ASGIMiddleware`` plus:

- lifespan: startup runs once when the mount is built, shutdown when the process exits;
- a client that disconnects is reported to the ASGI app (``receive`` answers ``http.disconnect``
  and ``send`` raises ``OSError``, as ASGI spec 2.4 says), so generators close and cleanups run;
- a chunked request body (no ``Content-Length``) is read to its end, up to ``max_body_size + 1``
  bytes, instead of arriving empty;
- a body that ends before its ``Content-Length`` ends there for the app (its last message has
  ``more_body: False``; the FastAPI routes then answer 400 as the Flask frontend does), where
  a2wsgi asked the WSGI input for the missing bytes, and handed the app empty chunks, forever.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from a2wsgi import ASGIMiddleware, WSGIMiddleware
from a2wsgi.asgi import ASGIResponder
from a2wsgi.wsgi import Body, WSGIResponder, build_environ

from .aio import portal

__all__ = ["ASGIMount", "ClientDisconnected", "FileWrapper", "WSGIMount"]

Message = dict[str, Any]


class ClientDisconnected(ConnectionError):
    """The client went away; raised into the app that was still sending to it."""


# --- Flask (WSGI) inside FastAPI (ASGI) --------------------------------------------------------


class WSGIMount(WSGIMiddleware):
    """Serve a WSGI app from an ASGI server. ``threads`` bounds the WSGI calls running at once."""

    def __init__(self, app: Any, threads: int = 64, send_queue_size: int = 10) -> None:
        super().__init__(app, workers=threads, send_queue_size=send_queue_size)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            responder = _WSGIResponder(self.app, self.executor, self.send_queue_size)
            return await responder(scope, receive, send)
        return await super().__call__(scope, receive, send)


class _WSGIResponder(WSGIResponder):
    def __init__(self, app: Any, executor: Any, send_queue_size: int) -> None:
        super().__init__(app, executor, send_queue_size)
        self.disconnected = False
        # a2wsgi's thread waits for the event loop to take every message, a round trip per
        # chunk; here it only waits when send_queue_size messages are still unsent.
        self.send_queue = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(send_queue_size)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # One task reads `receive` for the whole request: body messages go to the WSGI thread
        # through a small queue; http.disconnect also stops the thread at its next chunk.
        inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=4)
        pump = self.loop.create_task(self._pump(receive, inbox))
        environ: Any = build_environ(scope, Body(self.loop, inbox.get))  # type: ignore[arg-type]
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
            pump.cancel()
            if not sender.done():
                sender.cancel()
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])

    async def _pump(self, receive: Any, inbox: asyncio.Queue[Message]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                await inbox.put(message)  # ends a body read in progress
                return
            await inbox.put(message)

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


# --- FastAPI (ASGI) inside Flask (WSGI) --------------------------------------------------------


class ASGIMount(ASGIMiddleware):
    """Serve an ASGI app from a WSGI server, with lifespan and disconnects delivered."""

    def __init__(self, app: Any, max_body_size: int, startup_timeout: float = 30.0) -> None:
        # The portal's loop: the ASGI app and the wrappers' async code then share one loop.
        super().__init__(app, loop=portal.loop)
        self.max_body_size = max_body_size
        self._lifespan = _Lifespan(app, self.loop)
        self._lifespan.start(startup_timeout)
        atexit.register(self._lifespan.stop)

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        responder = _ASGIResponder(self.app, self.loop, self.wait_time)
        environ = _with_content_length(_decodable(environ), self.max_body_size)
        return responder.respond(environ, start_response)


class _ASGIResponder(ASGIResponder):
    gone = False
    body: _DeclaredBody | None = None

    def respond(self, environ: Any, start_response: Any) -> Iterator[bytes]:
        finished = False
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit():
            self.body = _DeclaredBody(environ["wsgi.input"], int(declared))
            environ = {**environ, "wsgi.input": self.body}
        inner: Any = self(environ, start_response)
        try:
            yield from inner
            finished = True
        finally:
            if not finished:
                # The WSGI server closed us early: its write to the client failed.
                self.gone = True
                inner.close()
                self.send_event.set(None)
                self.receive_event.set({"type": "http.disconnect"})

    async def asgi_receive(self) -> Any:
        if self.gone:
            return {"type": "http.disconnect"}
        if self.body is not None and self.body.ended:
            # As after a2wsgi's own last body message: wait for the response to be over.
            return await self.receive_event.wait()
        message = await super().asgi_receive()
        if self.body is not None and self.body.ended and message.get("type") == "http.request":
            return {**message, "more_body": False}  # the input ended short of Content-Length
        return message

    async def asgi_send(self, message: Any) -> None:
        if self.gone:
            raise ClientDisconnected("The client disconnected.")
        await super().asgi_send(message)
        if self.gone:
            raise ClientDisconnected("The client disconnected.")


def _decodable(environ: Any) -> Any:
    # a2wsgi encodes QUERY_STRING as ASCII and decodes PATH_INFO as UTF-8, and a raw byte outside
    # those crashed it into a text 500. Escape the query's raw bytes (the core decodes them as
    # UTF-8 either way) and replace what in the path is not UTF-8.
    query: str = environ.get("QUERY_STRING", "")
    path: str = environ.get("PATH_INFO", "")
    if query.isascii() and path.isascii():
        return environ
    fixed = "".join(ch if ch.isascii() else f"%{ord(ch):02X}" for ch in query)
    path = path.encode("latin-1").decode("utf-8", "replace").encode("utf-8").decode("latin-1")
    return {**environ, "QUERY_STRING": fixed, "PATH_INFO": path}


class _DeclaredBody:
    """The WSGI input, noting when it ends short of ``length`` bytes (a client that gave up
    mid-body): a2wsgi reads until it has Content-Length bytes, and read again on every b""."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream = stream
        self.remaining = length
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self.remaining -= len(data)
        self.ended = self.ended or (not data and size != 0 and self.remaining > 0)
        return data


def _with_content_length(environ: Any, max_body_size: int) -> Any:
    # a2wsgi reads CONTENT_LENGTH bytes and no more; a chunked body has none, so read it here.
    if environ.get("CONTENT_LENGTH") or environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not (chunked or environ.get("wsgi.input_terminated")):
        return environ
    stream = environ["wsgi.input"]
    buffer = io.BytesIO()
    while buffer.tell() <= max_body_size:
        chunk = stream.read(min(65536, max_body_size + 1 - buffer.tell()))
        if not chunk:
            break
        buffer.write(chunk)
    if buffer.tell() == 0:
        return environ
    body = buffer.getvalue()
    return {**environ, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}


class _Lifespan:
    """Drives an ASGI app's lifespan protocol on a loop running in another thread."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.inbox: asyncio.Queue[Message] | None = None
        self.outbox: asyncio.Queue[Message] | None = None
        self.task: asyncio.Future[Any] | None = None

    def start(self, timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(self._startup(), self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.inbox is None or self.task is None or self.task.done() or self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        except (FutureTimeoutError, RuntimeError):
            pass  # exiting anyway; the loop thread is a daemon

    async def _startup(self) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox, self.outbox = inbox, outbox
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        message = await self._next(outbox)
        if message is not None and message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"The mounted ASGI app failed to start: {message.get('message', '')}")

    async def _shutdown(self) -> None:
        assert self.inbox is not None and self.outbox is not None
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._next(self.outbox)

    async def _next(self, outbox: asyncio.Queue[Message]) -> Message | None:
        # An app without lifespan support raises or returns at once; that is not an error.
        assert self.task is not None
        getter = asyncio.ensure_future(outbox.get())
        await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        return None
