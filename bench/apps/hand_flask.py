"""Hand-written Flask endpoints: Response with a mimetype, send_file, a generator; ``async def``
views (``flask[async]``: asgiref runs each on an event loop of its own) as twins of async wrappers."""

from flask import Flask, Response, send_file

from bench import workload

app = Flask(__name__)


@app.get("/png")
def png() -> Response:
    return Response(workload.PNG_100K, mimetype="image/png")


@app.get("/render")
def render() -> Response:
    return Response(workload.render_png(), mimetype="image/png")


@app.get("/file")
def file() -> Response:
    return send_file(workload.BIG_FILE, mimetype="application/octet-stream")


@app.get("/stream")
def stream() -> Response:
    return Response(workload.stream(), mimetype="application/octet-stream")


@app.get("/apng")
async def apng() -> Response:
    return Response(workload.PNG_100K, mimetype="image/png")


@app.get("/slow")
async def slow() -> Response:
    return Response(await workload.slow_upstream(), mimetype="image/png")
