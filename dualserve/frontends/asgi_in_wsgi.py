"""FastAPI (ASGI) inside Flask (WSGI): a2wsgi's ``ASGIMiddleware``, with what the mount must not inherit fixed.

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
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from a2wsgi import ASGIMiddleware
from a2wsgi.asgi import ASGIResponder

from ..core.reply import body_malformed
from ..serving.aio import portal
from ..serving.bodies import ClientDisconnected

__all__ = ["ASGIMount"]

Message = dict[str, Any]
logger = logging.getLogger("dualserve")


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
