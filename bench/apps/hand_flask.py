"""Hand-written Flask endpoints: Response with a mimetype, send_file, a generator."""

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
