"""a2wsgi, with the defects the mounts must not inherit fixed in a thin layer of subclasses.

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

:class:`ASGIMount` (FastAPI inside Flask) is ``a2wsgi.ASGIMiddleware`` plus:

- lifespan: startup runs once when the mount is built, shutdown when the process exits;
- a client that disconnects is reported to the ASGI app (``receive`` answers ``http.disconnect``
  and ``send`` raises ``OSError``, as ASGI spec 2.4 says), so generators close and cleanups run;
- a chunked request body (no ``Content-Length``) is read to its end, up to ``max_body_size + 1``
  bytes, instead of arriving empty; one the server's input refuses as malformed is a ``400`` JSON;
- a body that ends before its ``Content-Length`` ends there for the app (its last message has
  ``more_body: False``; the FastAPI routes then answer 400 as the Flask frontend does), where
  a2wsgi asked the WSGI input for the missing bytes, and handed the app empty chunks, forever.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import logging
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import IO, Any

from a2wsgi import ASGIMiddleware, WSGIMiddleware
from a2wsgi.asgi import ASGIResponder
from a2wsgi.wsgi import WSGIResponder, build_environ

from .aio import portal
from .replies import body_malformed
from .service import DEFAULT_MAX_BODY_SIZE

__all__ = ["ASGIMount", "ClientDisconnected", "FileWrapper", "Spool", "WSGIMount"]

Message = dict[str, Any]
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


# --- Flask (WSGI) inside FastAPI (ASGI) --------------------------------------------------------


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
        try:
            environ = _with_content_length(_decodable(environ), self.max_body_size)
        except Exception as exc:
            # The server's input refused a chunked body (Werkzeug's dev server raises OSError("Invalid
            # chunk header")): the FastAPI app never sees the error, so it is answered here, as the
            # Flask frontend answers it, not as the WSGI server's 500 page.
            return _malformed_body(exc, start_response)
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


def _malformed_body(exc: Exception, start_response: Any) -> Iterable[bytes]:
    reply = body_malformed(str(exc))
    assert isinstance(reply.body, bytes)
    start_response("400 Bad Request", reply.headers)
    return [reply.body]


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
