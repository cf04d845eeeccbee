"""FastAPI (ASGI) inside Flask (WSGI): ``a2wsgi.ASGIMiddleware``, with the request relay written here.

:class:`ASGIMount` is ``a2wsgi.ASGIMiddleware`` (the app, the loop it runs on, ``wait_time``);
each request is relayed by this module's :class:`_Exchange`, which differs from a2wsgi's in:

- lifespan: startup runs once when the mount is built, shutdown when the process exits;
- a client that disconnects is reported to the ASGI app (``receive`` answers ``http.disconnect``
  and ``send`` raises ``OSError``, as ASGI spec 2.4 says), so generators close and cleanups run;
- a chunked request body (no ``Content-Length``) is read to its end, up to ``max_body_size + 1``
  bytes, instead of arriving empty; one the server's input refuses as malformed is a ``400`` JSON;
- a body that ends before its ``Content-Length`` ends there for the app (its last message has
  ``more_body: False``; the FastAPI routes then answer 400 as the Flask frontend does), where
  a2wsgi asked the WSGI input for the missing bytes, and handed the app empty chunks, forever;
- a path that is not UTF-8 or a query with raw bytes reaches the app (a2wsgi raised: a text 500);
- the app runs in a copy of the context of the WSGI call, taken when the server calls the mount:
  a context variable set by WSGI middleware around the mount reaches the app (a2wsgi started the
  app at the first iteration, after such a middleware had reset its variable).

Why the relay is written here rather than extended: a2wsgi exports only its two middleware
classes, and its private ``ASGIResponder`` changed within the 1.10 series (1.10.5 replaced its
events and lock, 1.10.8 made ``start_asgi_app`` a coroutine, 1.10.10 changed how the body ends),
so the mount's overrides of it (built on 1.10.5's events) broke on 1.10.0 to 1.10.4, which
``a2wsgi>=1.10`` allowed. The relay is one queue of the app's messages with a future each,
settled by the WSGI thread; ``tests/test_mounts.py`` checks the public pieces relied on here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import io
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from http import HTTPStatus
from typing import Any

from a2wsgi import ASGIMiddleware

from ..core.reply import body_malformed
from ..serving.aio import portal
from ..serving.bodies import ClientDisconnected

__all__ = ["ASGIMount"]

Message = dict[str, Any]
#: Bytes asked of the WSGI input for one ``http.request`` message.
READ_SIZE = 65536


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
        try:
            environ = _with_content_length(environ, self.max_body_size)
        except Exception as exc:
            # The server's input refused a chunked body (Werkzeug's dev server raises OSError("Invalid
            # chunk header")): the FastAPI app never sees the error, so it is answered here, as the
            # Flask frontend answers it, not as the WSGI server's 500 page.
            return _malformed_body(exc, start_response)
        # The context is taken now: the server iterates the answer after the middleware around
        # this call has returned, and reset what it set.
        return _Exchange(self.loop, environ).relay(self.app, start_response, contextvars.copy_context(), self.wait_time)


class _Exchange:
    """One request: the ASGI app on the loop; the WSGI thread reads the body and writes the answer.

    Each ``receive`` and ``send`` of the app is a note in :attr:`notes` with a future, which the
    thread settles once it has read the body chunk asked for, or once the server has taken the
    message: the app waits for the client as it would on an ASGI server."""

    def __init__(self, loop: asyncio.AbstractEventLoop, environ: Any) -> None:
        self.loop = loop
        self.environ = environ
        self.input = environ.get("wsgi.input") or io.BytesIO()
        declared: str = environ.get("CONTENT_LENGTH") or ""
        self.remaining = int(declared) if declared.isdigit() else 0
        self.notes: queue.SimpleQueue[tuple[Message, asyncio.Future[Any] | None]] = queue.SimpleQueue()
        self.finished = threading.Event()  # the app has returned
        # On the loop only: whether the body was all received, whether the answer is over (sent
        # whole, or the client left), and the futures of the notes not yet settled.
        self.body_received = False
        self.over = False
        self.closed = asyncio.Event()
        self.waiting: set[asyncio.Future[Any]] = set()

    def relay(
        self, app: Any, start_response: Any, context: contextvars.Context, wait_time: float | None
    ) -> Iterator[bytes]:
        # Created from within `context`, the app's task copies it.
        task = context.run(asyncio.run_coroutine_threadsafe, self._run(app, _scope(self.environ)), self.loop)
        try:
            yield from self._answer(start_response)
        finally:
            # The answer was sent whole, or the server closed us early (its write to the client
            # failed): from now on the app receives a disconnect, and its sends fail.
            self.loop.call_soon_threadsafe(self._close)
        # As a2wsgi: the WSGI response ends once the app has returned (its background tasks done).
        if not self.finished.wait(wait_time):
            task.cancel()

    # On the loop.

    async def _run(self, app: Any, scope: Message) -> None:
        try:
            await app(scope, self._receive, self._send)
        except BaseException as exc:
            self.notes.put(({"type": "app.done", "exception": exc}, None))
            if not isinstance(exc, Exception):
                raise
        else:
            self.notes.put(({"type": "app.done", "exception": None}, None))
        finally:
            self.finished.set()

    async def _receive(self) -> Message:
        if self.body_received or self.over:
            # As after a2wsgi's own last body message: nothing comes until the answer is over.
            await self.closed.wait()
            return {"type": "http.disconnect"}
        try:
            message: Message = await self._ask({"type": "receive"})
        except ClientDisconnected:
            return {"type": "http.disconnect"}
        self.body_received = not message.get("more_body", False)
        return message

    async def _send(self, message: Message) -> None:
        if self.over:
            raise ClientDisconnected("The client disconnected.")
        await self._ask(message)

    async def _ask(self, note: Message) -> Any:
        future = self.loop.create_future()
        self.waiting.add(future)
        self.notes.put((note, future))
        try:
            return await future
        finally:
            self.waiting.discard(future)

    def _close(self) -> None:
        self.over = True
        self.closed.set()
        for future in self.waiting:
            if not future.done():
                future.set_exception(ClientDisconnected("The client disconnected."))

    # In the WSGI thread.

    def _answer(self, start_response: Any) -> Iterator[bytes]:
        started = sent = False
        while True:
            note, future = self.notes.get()
            kind = note["type"]
            if kind == "receive":
                self._settle(future, self._read())
            elif kind == "http.response.start":
                headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in note.get("headers", ())]
                start_response(_status_line(note["status"]), headers)
                started = True
                self._settle(future, None)
            elif kind == "http.response.body":
                chunk: bytes = note.get("body", b"")
                if chunk:
                    yield chunk  # the app's send returns once the server has taken the chunk
                    sent = True
                self._settle(future, None)
                if not note.get("more_body", False):
                    return
            elif kind == "app.done":
                error: BaseException | None = note["exception"]
                if error is None and started:
                    return  # the app returned before its last body message: the body ends here
                if sent:
                    assert error is not None
                    raise error  # the status went out: the server can only cut the body
                exc_info = None if error is None else (type(error), error, error.__traceback__)
                fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "28")]
                start_response("500 Internal Server Error", fields, exc_info)  # a2wsgi's answer
                yield b"Server got itself in trouble"
                return
            else:
                self._settle(future, RuntimeError(f"Unexpected ASGI message type {kind!r}."))

    def _read(self) -> Message:
        # An input that ends short of its Content-Length (a client that gave up mid-body) ends the
        # body: its last message says so, and the app answers 400.
        data: bytes = self.input.read(min(READ_SIZE, self.remaining)) if self.remaining > 0 else b""
        self.remaining = self.remaining - len(data) if data else 0
        return {"type": "http.request", "body": data, "more_body": self.remaining > 0}

    def _settle(self, future: asyncio.Future[Any] | None, outcome: Any) -> None:
        if future is not None:
            self.loop.call_soon_threadsafe(_resolve, future, outcome)


def _resolve(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return  # settled by _close already: the client left
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown Status Code"


def _scope(environ: Any) -> Message:
    """The ASGI scope of a WSGI request, as a2wsgi's ``build_scope`` makes it, but for bytes it
    could not decode: a path that is not UTF-8 has them replaced, and a query's raw bytes are
    %-escaped (the core decodes the query as UTF-8 either way)."""
    headers = [
        (
            (key[5:] if key.startswith("HTTP_") else key).lower().replace("_", "-").encode("latin-1"),
            value.encode("latin-1"),
        )
        for key, value in environ.items()
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH")
        or (key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"))
    ]
    root_path = _text(environ.get("SCRIPT_NAME", ""))
    query: str = environ.get("QUERY_STRING", "")
    if not query.isascii():
        query = "".join(ch if ch.isascii() else f"%{ord(ch):02X}" for ch in query)
    scope: Message = {
        "wsgi_environ": environ,  # as a2wsgi gives it
        "type": "http",
        # 2.4: `send` raises OSError once the client has left.
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.0").split("/")[1],
        "method": environ["REQUEST_METHOD"],
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": root_path + _text(environ.get("PATH_INFO", "")),
        "query_string": query.encode("ascii"),
        "root_path": root_path,
        "server": (environ["SERVER_NAME"], int(environ["SERVER_PORT"])),
        "headers": headers,
        "extensions": {},
    }
    if environ.get("REMOTE_ADDR") and environ.get("REMOTE_PORT"):
        scope["client"] = (environ["REMOTE_ADDR"], int(environ["REMOTE_PORT"]))
    return scope


def _text(wsgi_string: str) -> str:
    # PEP 3333's "bytes as latin-1" string, decoded as the UTF-8 it should be.
    return wsgi_string.encode("latin-1").decode("utf-8", "replace")


def _malformed_body(exc: Exception, start_response: Any) -> Iterable[bytes]:
    reply = body_malformed(str(exc))
    assert isinstance(reply.body, bytes)
    start_response("400 Bad Request", reply.headers)
    return [reply.body]


def _with_content_length(environ: Any, max_body_size: int) -> Any:
    # The relay reads CONTENT_LENGTH bytes and no more; a chunked body has none, so read it here.
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
