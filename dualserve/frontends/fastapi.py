"""The FastAPI frontend: ASGI requests in, core Replies out as Starlette responses. Translation only.

The pipeline routes are plain ASGI endpoints: every method reaches the core (which answers 405
with a stable ``Allow``), and FastAPI's dependency and validation machinery, which would
second-guess the core, is not in the way. While nobody has added middleware to the app, those two
routes are answered before FastAPI's middleware stack too, which adds nothing to them; everything
else (user routes, the 404 for unknown paths) goes through FastAPI as usual.

Sync work goes to a plain ``ThreadPoolExecutor``: under load, one hop costs about a third of
``anyio.to_thread.run_sync``'s (13 against 39 microseconds here, 32 requests in flight).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from ..core.reply import FileBody, Reply, StreamBody, discard_late, framework_error
from ..core.request import Request
from ..serving.openapi import build_document
from ..serving.service import LOOP_PARSE_LIMIT, Service

__all__ = ["DualserveFastAPI", "create_app", "to_request", "to_response"]

FILE_CHUNK_SIZE = 1024 * 1024
logger = logging.getLogger("dualserve")
T = TypeVar("T")


def create_app(service: Service) -> DualserveFastAPI:
    """A FastAPI app serving ``service``: ``/{name}/run`` and ``/status``."""
    endpoints = _Endpoints(service)
    app = DualserveFastAPI(endpoints, title="dualserve", docs_url=None, redoc_url=None, openapi_url=None)
    # Flask does not redirect /status/ to /status; neither do we, so both answer 404 alike.
    app.router.redirect_slashes = False
    app.router.routes += [
        Route("/status", _Raw(endpoints.status)),
        Route("/{name}/run", _Raw(endpoints.run_route)),
        Route("/openapi.json", _Raw(endpoints.openapi)),
        *(
            Route(path, _Raw(functools.partial(endpoints.page_route, page)))
            for page in ("docs", "ui")
            for path in (f"/{page}", f"/{page}/{{filename}}")
        ),
    ]
    # FastAPI's own app.openapi() (used by tools and tests) gives the same document as /openapi.json.
    app.openapi = lambda: build_document(service.registry)  # type: ignore[method-assign]
    app.add_exception_handler(HTTPException, _http_exception)
    app.state.dualserve = service
    if any(pipeline.uses_flask for pipeline in service.registry.pipelines.values()):
        # Such a wrapper imported Flask already; its helpers need a Flask context to run in.
        from . import flask as flask_adapter

        flask_adapter.provide_context(service)
    return app


class DualserveFastAPI(FastAPI):
    """FastAPI, with dualserve's own routes and mounts answered ahead of the middleware stack
    for as long as nobody has added middleware to the app."""

    def add_pipeline_route(self, path: str, name: str) -> None:
        """Serve pipeline ``name`` at ``path`` too, such as a legacy URL (``/files/{filename}``):
        on GET and HEAD the path's parameters become arguments, as query parameters do; a POST
        takes its JSON body as on ``/{name}/run``."""
        endpoints = self._endpoints

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            params = tuple((key, str(value)) for key, value in scope.get("path_params", {}).items())
            await endpoints.run(scope, receive, send, name, params)

        self.router.routes.insert(0, Route(path, _Raw(endpoint)))

    def __init__(self, endpoints: _Endpoints, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._endpoints = endpoints
        self._direct_mounts: dict[str, Any] = {}

    def mount_direct(self, prefix: str, app: Any) -> None:
        """``mount(prefix, app)`` ahead of every route, with requests under ``prefix/`` handed to
        ``app`` directly."""
        # First, as Werkzeug's DispatcherMiddleware puts the FastAPI mount in Flask: "/flask/run"
        # is the Flask app's "/run", not a pipeline called "flask" (a 404 of another wording).
        self.router.routes.insert(0, Mount(prefix, app))
        self._direct_mounts[prefix] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.user_middleware:
            root: str = scope.get("root_path", "")
            path: str = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            for prefix, app in self._direct_mounts.items():
                if path.startswith(prefix + "/"):
                    # The child scope Starlette's Mount would build.
                    child = {**scope, "app_root_path": scope.get("app_root_path", root), "root_path": root + prefix}
                    await app(child, receive, send)
                    return
            if await self._endpoints.dispatch(scope, receive, send):
                return
        await super().__call__(scope, receive, send)


class _Raw:
    """An ASGI callable that is not a function, so Starlette's ``Route`` neither wraps it as a
    request/response endpoint nor restricts its methods: every method reaches the core."""

    def __init__(self, endpoint: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


class _Endpoints:
    """The two routes as raw ASGI callables, so Starlette's ``Route`` passes every method through."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._executor: ThreadPoolExecutor | None = None

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer ``/status`` and ``/{name}/run`` directly; False for any other path."""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == "/status":
            await self.status(scope, receive, send)
            return True
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "" and parts[1] and parts[2] == "run":
            await self.run(scope, receive, send, parts[1])
            return True
        if path == "/openapi.json":
            await self.openapi(scope, receive, send)
            return True
        if parts[0] == "" and len(parts) in (2, 3) and parts[1] in ("docs", "ui"):
            await self.page(scope, receive, send, parts[1], parts[2] if len(parts) == 3 else None)
            return True
        return False

    async def openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self.service.openapi(_request(scope), scope.get("root_path", ""))
        await to_response(reply)(scope, receive, send)

    async def page(self, scope: Scope, receive: Receive, send: Send, name: str, filename: str | None) -> None:
        reply = await self.to_thread(self.service.page, _request(scope), name, filename)  # stats a file
        await to_response(reply)(scope, receive, send)

    async def page_route(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        await self.page(scope, receive, send, name, scope["path_params"].get("filename"))

    async def status(self, scope: Scope, receive: Receive, send: Send) -> None:
        await to_response(self.service.status(_request(scope)))(scope, receive, send)

    async def run_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.run(scope, receive, send, scope["path_params"]["name"])

    async def run(
        self, scope: Scope, receive: Receive, send: Send, name: str, path_params: tuple[tuple[str, str], ...] = ()
    ) -> None:
        # These routes may skip FastAPI's ServerErrorMiddleware (a text 500): a failure that got
        # past the core still becomes the contract's JSON, while no header has gone out.
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._run(scope, receive, tracked, name, path_params)
        except Exception:
            logger.exception("Request to pipeline %r failed in the FastAPI adapter", name)
            if started:
                raise
            await to_response(framework_error(500, method=scope["method"]))(scope, receive, send)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, name: str, path_params: tuple[tuple[str, str], ...]
    ) -> None:
        request = await to_request(scope, receive, self.service)
        if request is None:
            return  # the client left while sending its body: nobody to run the pipeline for
        if isinstance(request, Request):
            if path_params:
                request = dataclasses.replace(request, path_params=path_params)
            if len(request.body) > LOOP_PARSE_LIMIT:
                # A large form or JSON body takes CPU to parse: in a thread, the loop goes on serving.
                outcome = await self.to_thread(self.service.prepare, name, request)
            else:
                outcome = self.service.prepare(name, request)
            reply = outcome if isinstance(outcome, Reply) else await outcome.run_async_within(self.to_thread)
        else:
            reply = request
        await to_response(reply)(scope, receive, send)

    async def to_thread(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.service.threads, thread_name_prefix="dualserve")
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(self._executor, context.run, function, *args)
        try:
            # Shielded: a running thread cannot be stopped, and the reply it makes must not be lost.
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # the request was cancelled (a deadline middleware, shutdown)
            future.add_done_callback(discard_late)
            raise


async def to_request(scope: Scope, receive: Receive, service: Service) -> Request | Reply | None:
    """The core's view of an ASGI request, the core's answer to a body it cannot take, or None
    when the client disconnected before its body was complete."""
    if scope["method"] != "POST":
        return _request(scope)
    limit = service.max_body_size
    headers = Headers(scope=scope)
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return service.body_too_large()
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return service.body_too_large()
        if not message.get("more_body", False):
            break
    if declared.isdigit() and len(body) < int(declared):
        # The body ended short of its Content-Length (as Starlette's test client and the a2wsgi
        # mount in Flask deliver it): the Flask frontend's answer, not a run on half a body.
        return service.body_incomplete()
    return _request(scope, headers, bytes(body))


def _request(scope: Scope, headers: Headers | None = None, body: bytes = b"") -> Request:
    fields = _JoinedHeaders(headers or Headers(scope=scope))
    return Request(scope["method"], fields, scope["query_string"], body, "starlette")


class _JoinedHeaders:
    """Request headers as the core reads them: repeated field lines joined with "," (RFC 9110
    5.3), as WSGI servers and a2wsgi join them. Starlette's ``Headers.get`` answers the first
    line alone, so two ``Range`` lines were a 206 here and a 200 on the Flask mount beside it."""

    __slots__ = ("headers",)

    def __init__(self, headers: Headers) -> None:
        self.headers = headers

    def get(self, key: str, /) -> str | None:
        values = self.headers.getlist(key)
        if not values:
            return None
        return values[0] if len(values) == 1 else ",".join(values)


def to_response(reply: Reply) -> Response:
    """A Starlette response sending exactly the reply's status, headers and body."""
    if reply.passthrough is not None:
        passthrough: Response = reply.passthrough
        return passthrough
    return _ReplyResponse(reply)


class _ReplyResponse(Response):
    """Sends a core Reply as it is, and runs its cleanups however the response ends.

    ``Response.__init__`` is skipped on purpose: it would add headers the core already decided.
    A file or stream body is sent while a second task watches for ``http.disconnect`` (uvicorn
    drops writes to a closed connection silently), so a client that goes away stops the read
    or the generator within one chunk, and the generator is closed rather than left to the GC.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.status_code = reply.status_code
        self.background = None
        self.body = reply.body if isinstance(reply.body, bytes) else b""
        self.raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.reply.body
        send = _raising_gone(send)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if isinstance(body, bytes):
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                try:
                    if isinstance(body, FileBody):
                        await _send_file(body, send)
                    else:
                        await _send_stream(body, send)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except _ClientGone:
                    pass  # caught inside the group, or it would leave wrapped in an ExceptionGroup
                group.cancel_scope.cancel()
        except _ClientGone:
            pass  # the client left before the headers or a one-piece body went out: nothing to log
        finally:
            with anyio.CancelScope(shield=True):
                if isinstance(body, StreamBody):
                    await _close_stream(body)
                if self.reply.cleanups:
                    await self.reply.aclose(anyio.to_thread.run_sync)


class _ClientGone(Exception):
    """``send`` failed because the client has left: the response is over, which is no error."""


def _raising_gone(send: Send) -> Send:
    # ASGI 2.4 lets a server raise OSError from send() once the connection is closed (the Flask
    # side's bridge does); uvicorn drops the message instead, and the disconnect watch stops us.
    async def guarded(message: Message) -> None:
        try:
            await send(message)
        except OSError as exc:
            # A closed connection (a reset, a broken pipe, or a server's bare "disconnected" error);
            # an OSError with another errno (a full disk in some middleware) is a real failure.
            if isinstance(exc, ConnectionError) or exc.errno is None:
                raise _ClientGone from exc
            raise

    return guarded


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # a request body nobody read; keep listening
    scope.cancel()


async def _send_file(body: FileBody, send: Send) -> None:
    remaining = body.length
    async with await anyio.open_file(body.path, "rb") as file:
        await file.seek(body.start)
        while remaining > 0:
            chunk = await file.read(min(FILE_CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _send_stream(body: StreamBody, send: Send) -> None:
    chunks = body.chunks
    if isinstance(chunks, AsyncIterator):
        async for piece in chunks:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        return
    # A sync generator runs in a worker thread, one chunk per call; a cancelled send waits for
    # the chunk in progress, so the generator is never closed while it is running.
    while True:
        chunk: bytes | None = await anyio.to_thread.run_sync(_next_chunk, chunks)
        if chunk is None:
            return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def _close_stream(body: StreamBody) -> None:
    chunks = body.chunks
    if isinstance(chunks, AsyncIterator):
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    else:
        close = getattr(chunks, "close", None)
        if close is not None:
            await anyio.to_thread.run_sync(close)


async def _http_exception(request: StarletteRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    allow = (exc.headers or {}).get("Allow")
    return to_response(framework_error(exc.status_code, allow, request.scope.get("method", "GET")))
