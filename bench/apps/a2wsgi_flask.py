"""The hand-written Flask app mounted at /flask through plain a2wsgi, under uvicorn."""

from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.routing import Mount

from bench.apps.hand_flask import app as flask_app

app = Starlette(routes=[Mount("/flask", WSGIMiddleware(flask_app))])  # type: ignore[arg-type]
