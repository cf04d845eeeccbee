"""Plain Starlette: the ASGI floor that FastAPI is built on."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from bench import workload


def png(request: Request) -> Response:
    return Response(workload.PNG_100K, media_type="image/png")


def render(request: Request) -> Response:
    return Response(workload.render_png(), media_type="image/png")


def file(request: Request) -> FileResponse:
    return FileResponse(workload.BIG_FILE, media_type="application/octet-stream")


def stream(request: Request) -> StreamingResponse:
    return StreamingResponse(workload.stream(), media_type="application/octet-stream")


async def apng(request: Request) -> Response:
    return Response(workload.PNG_100K, media_type="image/png")


async def slow(request: Request) -> Response:
    return Response(await workload.slow_upstream(), media_type="image/png")


app = Starlette(
    routes=[
        Route("/png", png),
        Route("/render", render),
        Route("/file", file),
        Route("/stream", stream),
        Route("/apng", apng),
        Route("/slow", slow),
    ]
)
