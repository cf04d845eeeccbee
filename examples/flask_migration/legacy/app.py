"""The legacy Flask app: image endpoints written the classic way, before the migration."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from drawing import ASSETS, REPORT_NAME, SERVED_FILES, cat, report_csv

app = Flask(__name__)


@app.get("/cat.png")
def cat_png() -> Response:
    # The classic in-memory image: render, encode, Response with a mimetype.
    buffer = io.BytesIO()
    cat(int(request.args.get("size", 256))).save(buffer, format="PNG")
    return Response(buffer.getvalue(), mimetype="image/png")


@app.get("/files/<name>")
def files(name: str) -> Response:
    if name not in SERVED_FILES:
        abort(404)
    return send_file(ASSETS / name)


@app.get("/report")
def report() -> Response:
    # A download with a non-ASCII name.
    return send_file(io.BytesIO(report_csv()), mimetype="text/csv", as_attachment=True, download_name=REPORT_NAME)


@app.get("/health")
def health() -> Response:
    return jsonify(ok=True)
