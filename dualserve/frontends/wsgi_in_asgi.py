"""Flask (WSGI) inside FastAPI (ASGI): ``a2wsgi.WSGIMiddleware``, with the HTTP request path written here.

:class:`WSGIMount` is ``a2wsgi.WSGIMiddleware`` (its thread pool, its lifespan and websocket
answers); an HTTP request is answered by this module's :class:`_Exchange`, which differs from
a2wsgi's in:

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

As in a2wsgi, the WSGI call runs in a copy of the request task's context, so a context variable
set by ASGI middleware around the mount (a request id, a tenant) is seen by the Flask view.

Why the request path is written here rather than extended: a2wsgi exports only its two middleware
classes. Its ``WSGIResponder`` and ``build_environ`` are private, and changed within the 1.10
series (the responder's constructor in 1.10.1, so the mount's overrides failed on 1.10.0, which
``a2wsgi>=1.10`` allowed; its send queue in 1.10.3 and 1.10.4). The mount had overridden every
method of the responder but ``start_response``, which is how it lost a2wsgi's context copy without
a test noticing; what it still inherited was ``start_response`` and the loop over the iterable.
The environ is PEP 3333 in forty lines. ``tests/test_mounts.py`` checks what is taken from a2wsgi.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import IO, Any

from a2wsgi import WSGIMiddleware

from ..serving.bodies import ClientDisconnected, Spool, receive_body
from ..serving.service import DEFAULT_MAX_BODY_SIZE

__all__ = ["FileWrapper", "WSGIMount"]

Message = dict[str, Any]
# The two header names PEP 3333 gives no HTTP_ prefix; exactly these ("content_length" is not one).
_UNPREFIXED = {"content-length": "CONTENT_LENGTH", "content-type": "CONTENT_TYPE"}


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
        super().__init__(app, workers=threads)  # a2wsgi's pool: ``self.executor``
        self.send_queue_size = send_queue_size
        self.max_body_size = max_body_size

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            exchange = _Exchange(self.app, self.executor, self.send_queue_size, self.max_body_size)
            return await exchange(scope, receive, send)
        return await super().__call__(scope, receive, send)  # lifespan and websocket, as a2wsgi answers them


class _Exchange:
    """One HTTP request: its body read on the loop, the WSGI call in a thread, the answer relayed back."""

    def __init__(self, app: Any, executor: Executor, send_queue_size: int, max_body_size: int) -> None:
        self.app = app
        self.executor = executor
        self.max_body_size = max_body_size
        self.loop = asyncio.get_running_loop()
        # a2wsgi's thread waits for the event loop to take every message, a round trip per
        # chunk; here it only waits when send_queue_size messages are still unsent.
        self.send_queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.slots = threading.BoundedSemaphore(send_queue_size)
        self.disconnected = False
        self.response_started = False
        self.exc_info: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # The body is read here, on the loop, before a thread is taken: a client that sends it
        # slowly holds a socket, never one of the mount's threads.
        body = await self._read_body(scope, receive)
        if body is None:
            return  # the client left before its body was whole: nothing runs
        # From here `receive` only reports the client leaving, which stops the thread at its next chunk.
        watch = self.loop.create_task(self._watch(receive))
        sender = self.loop.create_task(self._sender(send))
        # This task's context, copied (as a2wsgi runs the call): what ASGI middleware around the
        # mount set in a context variable is what the Flask view reads.
        call = functools.partial(contextvars.copy_context().run, self._call, _environ(scope, body))
        try:
            await self.loop.run_in_executor(self.executor, call)
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
        try:
            # A write to the temp file blocks the loop as briefly as a page-cache write does.
            if not await receive_body(receive, body.write, limit + 1):
                body.close()
                self.disconnected = True
                return None
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

    async def _sender(self, send: Any) -> None:
        while (message := await self.send_queue.get()) is not None:
            if not self.disconnected:
                try:
                    await send(message)
                except OSError:
                    self.disconnected = True
            # Once disconnected, keep draining so a thread waiting for a slot gets free.
            self.slots.release()

    # In the thread, from here on.

    def _call(self, environ: dict[str, Any]) -> None:
        try:
            iterable = self.app(environ, self._start_response)
            try:
                for chunk in iterable:
                    if chunk:
                        self._send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except ClientDisconnected:
            pass  # the client left: the iterable is closed, and the thread is free

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
        # As a2wsgi: the first status goes out at once; an exc_info is raised once the answer is sent.
        self.exc_info = exc_info
        if not self.response_started:
            self.response_started = True
            fields = [
                (name.strip().encode("latin-1").lower(), value.strip().encode("latin-1")) for name, value in headers
            ]
            self._send({"type": "http.response.start", "status": int(status.split(" ", 1)[0]), "headers": fields})
        return self._write

    def _write(self, chunk: bytes) -> None:
        self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    def _send(self, message: Message) -> None:
        while not self.slots.acquire(timeout=1.0):
            if self.disconnected:  # the sender was cancelled (a shutdown): no slot comes back
                raise ClientDisconnected("The client disconnected.")
        if self.disconnected:
            self.slots.release()
            raise ClientDisconnected("The client disconnected.")
        self.loop.call_soon_threadsafe(self.send_queue.put_nowait, message)


def _environ(scope: Any, body: IO[bytes]) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP request, as a2wsgi's ``build_environ`` builds it but
    for three things: ``SCRIPT_NAME`` is the mount prefix (a2wsgi let a ``SCRIPT_NAME`` in the
    process environment replace it), the query string is latin-1 as PEP 3333 says (a2wsgi decoded
    ASCII and raised on a raw byte), and the input is marked terminated."""
    script_name = _wsgi_string(scope.get("root_path", ""))
    path_info = _wsgi_string(scope["path"])
    if path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]
    server_name, server_port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "asgi.scope": scope,  # as a2wsgi gives it
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        # Werkzeug reads a body without Content-Length (chunked) only from an input said to end.
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1")
        key = _UNPREFIXED.get(name) or "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        # Repeated field lines are joined with "," (RFC 9110 5.3), as WSGI servers join them.
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _wsgi_string(text: str) -> str:
    # PEP 3333's "bytes as latin-1" string: an ASGI path is decoded text, its bytes are UTF-8.
    return text.encode("utf-8").decode("latin-1")


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
