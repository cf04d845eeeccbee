"""Both frontends in one process, each mounted inside the other through a2wsgi.

- :func:`compose_asgi`: FastAPI at ``/`` and the Flask app at ``/flask/`` (for uvicorn).
- :func:`compose_wsgi`: Flask at ``/`` and the FastAPI app at ``/fastapi/`` (for gunicorn, ``flask run``).

Both share one :class:`~dualserve.serving.service.Service`, so wrappers are set up once per process.
``wsgi_in_asgi`` and ``asgi_in_wsgi`` hold the a2wsgi layer that makes disconnects, chunked bodies, lifespan
and the mount prefix behave on the mounted side as they do at the root.
"""

from __future__ import annotations

from fastapi import FastAPI
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ..core.routes import FASTAPI_PREFIX, FLASK_PREFIX
from ..serving.service import Service
from . import fastapi as fastapi_adapter
from . import flask as flask_adapter
from .asgi_in_wsgi import ASGIMount
from .wsgi_in_asgi import WSGIMount

__all__ = ["FASTAPI_PREFIX", "FLASK_PREFIX", "compose_asgi", "compose_wsgi"]


def compose_asgi(service: Service) -> FastAPI:
    """FastAPI serving ``service`` at ``/``, with the Flask frontend mounted at ``/flask``."""
    app = fastapi_adapter.create_app(service)
    inner = WSGIMount(flask_adapter.create_app(service), threads=service.threads, max_body_size=service.max_body_size)
    app.mount_direct(FLASK_PREFIX, inner)
    return app


def compose_wsgi(service: Service) -> flask_adapter.DualserveFlask:
    """Flask serving ``service`` at ``/``, with the FastAPI frontend mounted at ``/fastapi``."""
    app = flask_adapter.create_app(service)
    inner = ASGIMount(fastapi_adapter.create_app(service), max_body_size=service.max_body_size)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {FASTAPI_PREFIX: inner})  # type: ignore[method-assign]
    return app
