"""The FastAPI frontend: Starlette requests in, core Replies out as Starlette responses. Translation only.

The pipeline routes are plain ASGI endpoints on the FastAPI app: every method reaches the core
(which answers 405 with a stable ``Allow``), and FastAPI's per-request dependency and validation
machinery, which would second-guess the core, is not in the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..replies import FileBody, Reply, StreamBody, error_reply, framework_error
from ..requests import Request
from ..service import Service
from ..uploads import UploadFile

__all__ = ["create_app", "to_request", "to_response"]

FILE_CHUNK_SIZE = 1024 * 1024
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


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
            reply = self.service.status(await to_request(starlette_request, read_body=False))
        else:
            reply = await self._run(starlette_request, scope["path_params"][self.name_param])
        await to_response(reply)(scope, receive, send)

    async def _run(self, starlette_request: StarletteRequest, name: str) -> Reply:
        try:
            request = await to_request(starlette_request)
        except (HTTPException, ValueError) as exc:
            return error_reply(400, f"The form body could not be parsed: {getattr(exc, 'detail', exc)}")
        outcome = self.service.prepare(name, request)
        if isinstance(outcome, Reply):
            reply = outcome
        else:
            reply = await outcome.run_async(run_in_threadpool)
        if request.form is not None:
            reply.cleanups.append(starlette_request.close)
        return reply


async def to_request(request: StarletteRequest, read_body: bool = True) -> Request:
    """The core's view of a Starlette request; form bodies are parsed by Starlette."""
    body = b""
    form: list[tuple[str, Any]] | None = None
    if read_body and request.method == "POST":
        if request.headers.get("content-type", "").lower().startswith(_FORM_TYPES):
            parsed = await request.form()
            form = [(key, _upload(value)) for key, value in parsed.multi_items()]
        else:
            body = await request.body()
    return Request(request.method, request.headers, request.query_params.multi_items(), body, form, "starlette")


def _upload(value: Any) -> Any:
    if isinstance(value, StarletteUploadFile):
        return UploadFile(value.filename, value.content_type, value.file)
    return value


def to_response(reply: Reply) -> Response:
    """A Starlette response sending exactly the reply's status, headers and body."""
    if reply.native is not None:
        native: Response = reply.native
        return native
    background = BackgroundTask(reply.aclose) if reply.cleanups else None
    body = reply.body
    response: Response
    if isinstance(body, bytes):
        response = Response(body, reply.status_code, background=background)
    elif isinstance(body, FileBody):
        response = _FileBodyResponse(body, reply.status_code, background=background)
    else:
        assert isinstance(body, StreamBody)
        response = StreamingResponse(body.chunks, reply.status_code, background=background)
    # The core decided every header; Starlette's own (content-length, charset) must not be added.
    response.raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
    return response


class _FileBodyResponse(Response):
    """Sends ``length`` bytes of a file from ``start``, in large reads off the event loop."""

    def __init__(self, body: FileBody, status_code: int, background: BackgroundTask | None) -> None:
        super().__init__(None, status_code, background=background)
        self.file_body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in _read_range(self.file_body):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


async def _read_range(body: FileBody) -> AsyncIterator[bytes]:
    remaining = body.length
    async with await anyio.open_file(body.path, "rb") as file:
        await file.seek(body.start)
        while remaining > 0:
            chunk = await file.read(min(FILE_CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


async def _http_exception(request: StarletteRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return to_response(framework_error(exc.status_code, (exc.headers or {}).get("Allow")))
