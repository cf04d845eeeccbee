"""The FastAPI frontend: Starlette requests in, core Replies out as Starlette responses. Translation only.

The pipeline routes are plain ASGI endpoints on the FastAPI app: every method reaches the core
(which answers 405 with a stable ``Allow``), and FastAPI's per-request dependency and validation
machinery, which would second-guess the core, is not in the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..replies import FileBody, Reply, StreamBody, framework_error
from ..requests import Request
from ..service import Service

__all__ = ["create_app", "to_request", "to_response"]

FILE_CHUNK_SIZE = 1024 * 1024


def create_app(service: Service) -> FastAPI:
    """A FastAPI app serving ``service``: ``/{name}/run`` and ``/status``."""
    app = FastAPI(title="dualserve", docs_url=None, redoc_url=None, openapi_url=None)
    # Flask does not redirect /status/ to /status; neither do we, so both answer 404 alike.
    app.router.redirect_slashes = False
    app.router.routes += [Route("/status", _Endpoint(service, None)), Route("/{name}/run", _Endpoint(service, "name"))]
    app.add_exception_handler(HTTPException, _http_exception)
    app.state.dualserve = service
    return app


class _Endpoint:
    """A raw ASGI endpoint, so Starlette's ``Route`` passes every method through to the core."""

    def __init__(self, service: Service, name_param: str | None) -> None:
        self.service = service
        self.name_param = name_param

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        starlette_request = StarletteRequest(scope, receive)
        if self.name_param is None:
            reply = self.service.status(_without_body(starlette_request))
        else:
            reply = await self._run(starlette_request, scope["path_params"][self.name_param])
        await to_response(reply)(scope, receive, send)

    async def _run(self, starlette_request: StarletteRequest, name: str) -> Reply:
        request = await to_request(starlette_request, self.service)
        if isinstance(request, Reply):
            return request
        outcome = self.service.prepare(name, request)
        if isinstance(outcome, Reply):
            return outcome
        return await outcome.run_async(run_in_threadpool)


async def to_request(request: StarletteRequest, service: Service) -> Request | Reply:
    """The core's view of a Starlette request, or the core's answer to a body it cannot take."""
    if request.method != "POST":
        return _without_body(request)
    limit = service.max_body_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return service.body_too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return service.body_too_large()
    return Request("POST", request.headers, request.query_params.multi_items(), bytes(body), "starlette")


def _without_body(request: StarletteRequest) -> Request:
    return Request(request.method, request.headers, request.query_params.multi_items(), native="starlette")


def to_response(reply: Reply) -> Response:
    """A Starlette response sending exactly the reply's status, headers and body."""
    if reply.native is not None:
        native: Response = reply.native
        return native
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
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if isinstance(body, bytes):
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                if isinstance(body, FileBody):
                    await _send_file(body, send)
                else:
                    await _send_stream(body, send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if isinstance(body, StreamBody):
                    await _close_stream(body)
                await self.reply.aclose()


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
    return to_response(framework_error(exc.status_code, (exc.headers or {}).get("Allow")))
