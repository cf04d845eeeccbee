"""Hand-written FastAPI endpoints, as the FastAPI docs and Stack Overflow answers write them:
sync ``def`` twins of sync wrappers, ``async def`` twins of async ones."""

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response, StreamingResponse

from bench import workload

app = FastAPI()


@app.get("/png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def png() -> Response:
    return Response(content=workload.PNG_100K, media_type="image/png")


@app.get("/render", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def render() -> Response:
    return Response(content=workload.render_png(), media_type="image/png")


@app.get("/file")
def file() -> FileResponse:
    return FileResponse(workload.BIG_FILE, media_type="application/octet-stream")


@app.get("/stream")
def stream() -> StreamingResponse:
    return StreamingResponse(workload.stream(), media_type="application/octet-stream")


@app.get("/apng", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def apng() -> Response:
    return Response(content=workload.PNG_100K, media_type="image/png")


@app.get("/astream")
async def astream() -> StreamingResponse:
    return StreamingResponse(workload.astream(), media_type="application/octet-stream")


@app.get("/slow", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def slow() -> Response:
    return Response(content=await workload.slow_upstream(), media_type="image/png")
