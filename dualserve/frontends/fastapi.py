"""The FastAPI frontend: ASGI requests in, core Replies out as Starlette responses. Translation only.

Every route of :data:`~dualserve.core.routes.ROUTES` is a plain ASGI endpoint: every method
reaches the core (which answers 405 with a stable ``Allow``), and FastAPI's dependency and
validation machinery, which would second-guess the core, is not in the way. While nobody has
added middleware to the app, they are answered before FastAPI's middleware stack too, which adds
nothing to them; everything else (user routes, the 404 for unknown paths) goes through FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Literal

import anyio
import anyio.lowlevel
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from ..core import routes
from ..core.reply import FileBody, Reply, StreamBody, framework_error
from ..core.request import Request
from ..core.returns import FILE_CHUNK_SIZE
from ..core.streams import aclose_iterator, close_iterator
from ..serving.bodies import aread_body, declared_length
from ..serving.files import RangeFile, read_range
from ..serving.openapi import build_document
from ..serving.service import LOOP_PARSE_LIMIT, Service

__all__ = ["DualserveFastAPI", "create_app", "to_request", "to_response"]

logger = logging.getLogger("dualserve")


def create_app(service: Service) -> DualserveFastAPI:
    """A FastAPI app serving ``service``: every route of the core's table."""
    app = DualserveFastAPI(service, title="dualserve", docs_url=None, redoc_url=None, openapi_url=None)
    # Flask does not redirect /status/ to /status; neither do we, so both answer 404 alike.
    app.router.redirect_slashes = False
    app.router.routes += [Route(route.path, _Endpoint(service, route)) for route in routes.ROUTES]
    # FastAPI's own app.openapi() (used by tools and tests) gives the same document as /openapi.json.
    app.openapi = lambda: build_document(service.registry)  # type: ignore[method-assign]
    app.add_exception_handler(HTTPException, _http_exception)
    app.state.dualserve = service
    # The async setup() calls left for the server's loop, awaited before it takes requests.
    app.router.on_startup.append(service.start)
    return app


class DualserveFastAPI(FastAPI):
    """FastAPI, with dualserve's own routes and mounts answered ahead of the middleware stack
    for as long as nobody has added middleware to the app."""

    def __init__(self, service: Service, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._service = service
        self._direct_routes: tuple[routes.Route, ...] = routes.ROUTES
        self._direct_mounts: dict[str, Any] = {}

    def add_pipeline_route(
        self,
        path: str,
        name: str,
        methods: Iterable[str] | None = None,
        json: Literal["dualserve", "flask"] = "dualserve",
    ) -> None:
        """Serve pipeline ``name`` at ``path`` too, such as a legacy URL (``/files/{filename}``);
        the arguments are :func:`~dualserve.core.routes.pipeline_route`'s."""
        route = routes.pipeline_route(path, name, methods, json)
        self.router.routes.insert(0, Route(path, _Endpoint(self._service, route)))
        self._direct_routes = (route, *self._direct_routes)

    def mount_direct(self, prefix: str, app: Any) -> None:
        """``mount(prefix, app)`` ahead of every route, with requests under ``prefix/`` handed to
        ``app`` directly."""
        # First, as Werkzeug's DispatcherMiddleware puts the FastAPI mount in Flask: "/flask/run"
        # is the Flask app's "/run", not a pipeline called "flask" (a 404 of another wording).
        self.router.routes.insert(0, Mount(prefix, app))
        self._direct_mounts[prefix] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._service.registry.pending and scope["type"] == "http":
            await self._service.start()  # served with no lifespan (a mount, --lifespan off)
        if scope["type"] == "http" and not self.user_middleware:
            root: str = scope.get("root_path", "")
            path: str = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            for prefix, app in self._direct_mounts.items():
                if path.startswith(prefix + "/"):
                    # The child scope Starlette's Mount would build.
                    child = {**scope, "app_root_path": scope.get("app_root_path", root), "root_path": root + prefix}
                    await app(child, receive, send)
                    return
            found = routes.match(path, self._direct_routes)
            if found is not None:
                await answer(self._service, found[0], found[1], scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _Endpoint:
    """A route of the core's table as an ASGI callable. Not a function, so Starlette's ``Route``
    neither wraps it as a request/response endpoint nor restricts its methods."""

    def __init__(self, service: Service, route: routes.Route) -> None:
        self.service = service
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arguments = {**scope.get("path_params", {}), **dict(self.route.fixed)}
        await answer(self.service, self.route, arguments, scope, receive, send)


async def answer(
    service: Service, route: routes.Route, arguments: dict[str, str], scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer ``route`` with the core's reply. These routes may skip FastAPI's ServerErrorMiddleware
    (a text 500): a failure that got past the core still becomes the contract's JSON, while no
    header has gone out."""
    started = False

    async def tracked(message: Message) -> None:  # for a framework's own response, which cannot say
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    response: Response | None = None
    arrived = time.time_ns()
    try:
        request = await to_request(scope, receive, service, route.reads_body)
        if request is None:
            return  # the client left while sending its body: nobody to answer
        if isinstance(request, Reply):
            reply = service.finish(route, arguments, None, request, arrived)
        else:
            if service.blocks(route, request) or len(request.body) > LOOP_PARSE_LIMIT:
                # A file to stat, a large form or JSON body to parse: in a thread, the loop goes on.
                outcome = await service.to_thread(service.answer, route, arguments, request, scope.get("root_path", ""))
            else:
                outcome = service.answer(route, arguments, request, scope.get("root_path", ""))
            reply = outcome if isinstance(outcome, Reply) else await outcome.run_async()
            reply = service.finish(route, arguments, request, reply, arrived)
        response = to_response(reply, service)
        if isinstance(response, _ReplyResponse):
            await response(scope, receive, send)  # it says itself whether its status line went out
        else:
            await response(scope, receive, tracked)
    except Exception:
        logger.exception("Request to %s failed in the FastAPI frontend", route.path)
        if started or (isinstance(response, _ReplyResponse) and response.started):
            raise
        await to_response(framework_error(500, method=scope["method"]), service)(scope, receive, send)


async def to_request(
    scope: Scope, receive: Receive, service: Service, reads_body: bool = True
) -> Request | Reply | None:
    """The core's view of an ASGI request, the core's answer to a body it cannot take, or None
    when the client disconnected before its body was complete."""
    headers = _JoinedHeaders(scope["headers"])
    path = scope["path"]  # the whole path, a mount's prefix included (ASGI 3)
    client = scope.get("client")
    address = client[0] if client else ""
    if scope["method"] != "POST" or not reads_body:
        return Request(
            scope["method"], headers, scope["query_string"], framework="starlette", path=path, client=address
        )
    length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
    body = await aread_body(receive, declared_length(length), service.max_body_size)
    if body is None or isinstance(body, Reply):
        return body
    return Request("POST", headers, scope["query_string"], body, framework="starlette", path=path, client=address)


class _JoinedHeaders:
    """Request headers as the core reads them: repeated field lines joined with "," (RFC 9110
    5.3), as WSGI servers and a2wsgi join them. Starlette's ``Headers.get`` answers the first
    line alone, so two ``Range`` lines were a 206 here and a 200 on the Flask mount beside it.
    Read from the scope in one pass, on the first lookup (ASGI names are lowercase already)."""

    __slots__ = ("joined", "raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self.joined: dict[bytes, str] | None = None

    def get(self, key: str, /) -> str | None:
        joined = self.joined
        if joined is None:
            joined = self.joined = {}
            for name, value in self.raw:
                text = value.decode("latin-1")
                joined[name] = f"{joined[name]},{text}" if name in joined else text
        return joined.get(key.lower().encode("latin-1"))


def to_response(reply: Reply, service: Service) -> Response:
    """A Starlette response sending exactly the reply's status, headers and body."""
    if reply.passthrough is not None:
        passthrough: Response = reply.passthrough
        return passthrough
    return _ReplyResponse(reply, service)


class _ReplyResponse(Response):
    """Sends a core Reply as it is, and runs its cleanups however the response ends.

    ``Response.__init__`` is skipped on purpose: it would add headers the core already decided.
    A file or stream body is sent while a second task watches for ``http.disconnect`` (uvicorn
    drops writes to a closed connection silently), so a client that goes away stops the read
    or the generator within one chunk, and the generator is closed rather than left to the GC.
    Blocking work (a file's reads, a sync generator's chunks) goes to the service's pool.
    """

    def __init__(self, reply: Reply, service: Service) -> None:
        self.reply = reply
        self.service = service
        #: Whether the status line has gone out (past it, a failure can only cut the response off).
        self.started = False
        self.status_code = reply.status_code
        self.background = None
        self.body = reply.body if isinstance(reply.body, bytes) else b""
        self.raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.reply.body
        if isinstance(body, bytes) and not self.reply.cleanups:
            await self._send_whole(body, send)  # most answers: nothing to watch, nothing to close
            self.reply.finish()
            return
        send = _raising_gone(send)
        file: RangeFile | None = None
        try:
            if isinstance(body, FileBody) and body.length <= FILE_CHUNK_SIZE:
                # A small file (a cached answer, a page asset): read whole in one trip to the pool.
                body = await self.service.to_thread(read_range, body)
            elif isinstance(body, FileBody):
                # Opened before the status line goes out, so a failure can still be a JSON 500.
                file = await self.service.to_thread(RangeFile, body, _nothing)
            self.started = True
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if isinstance(body, bytes):
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                try:
                    if file is not None:
                        await self._send_chunks(file.read, (FILE_CHUNK_SIZE,), send)
                    else:
                        assert isinstance(body, StreamBody)
                        await self._send_stream(body, send)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except _ClientGone:
                    pass  # caught inside the group, or it would leave wrapped in an ExceptionGroup
                group.cancel_scope.cancel()
        except _ClientGone:
            pass  # the client left before the headers or a one-piece body went out: nothing to log
        except OSError as exc:
            if file is not None or not isinstance(body, FileBody):
                raise
            logger.error("A file result could not be opened to be sent", exc_info=exc)
            await _ReplyResponse(framework_error(500, method=scope["method"]), self.service)(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                if file is not None:
                    await self.service.to_thread(file.close)
                elif isinstance(body, StreamBody):
                    # An async stream is closed on this loop, where it was iterated.
                    if isinstance(body.chunks, AsyncIterator):
                        await aclose_iterator(body.chunks)
                    else:
                        await self.service.to_thread(close_iterator, body.chunks)
                await self.reply.aclose(self.service.to_thread)

    async def _send_whole(self, body: bytes, send: Send) -> None:
        self.started = True
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except OSError as exc:
            if not _is_gone(exc):
                raise

    async def _send_stream(self, body: StreamBody, send: Send) -> None:
        chunks = body.chunks
        if isinstance(chunks, AsyncIterator):
            async for piece in chunks:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            return
        # A sync generator runs in the pool, one chunk per call; a cancelled send waits for the
        # chunk in progress, so the generator is never closed while it is running.
        await self._send_chunks(_next_chunk, (chunks,), send)

    async def _send_chunks(self, produce: Any, args: tuple[Any, ...], send: Send) -> None:
        while True:
            # Shielded: a disconnect waits for the chunk in progress, so a generator is never
            # closed while it runs (that raises, and its cleanups would not run).
            with anyio.CancelScope(shield=True):
                chunk: bytes | None = await self.service.to_thread(produce, *args)
            # Where a disconnect held off by the shield is delivered: uvicorn's send() to a closed
            # connection returns without suspending, so the loop would never stop otherwise.
            await anyio.lowlevel.checkpoint()
            if not chunk:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


class _ClientGone(Exception):
    """``send`` failed because the client has left: the response is over, which is no error."""


def _raising_gone(send: Send) -> Send:
    # ASGI 2.4 lets a server raise OSError from send() once the connection is closed (the Flask
    # side's mount does); uvicorn drops the message instead, and the disconnect watch stops us.
    async def guarded(message: Message) -> None:
        try:
            await send(message)
        except OSError as exc:
            if _is_gone(exc):
                raise _ClientGone from exc
            raise

    return guarded


def _is_gone(exc: OSError) -> bool:
    # A closed connection (a reset, a broken pipe, or a server's bare "disconnected" error); an
    # OSError with another errno (a full disk in some middleware) is a real failure.
    return isinstance(exc, ConnectionError) or exc.errno is None


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # a request body nobody read; keep listening
    scope.cancel()


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _nothing() -> None:
    return None


async def _http_exception(request: StarletteRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    allow = (exc.headers or {}).get("Allow")
    service: Service = request.app.state.dualserve
    return to_response(framework_error(exc.status_code, allow, request.scope.get("method", "GET")), service)
