"""Python factories: build each app from wrapper objects, a directory, or a Registry.

The frameworks are imported inside each factory, not at the top, so that a wrapper's
``from dualserve import Media`` never imports Flask or FastAPI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .pipelines import Registry
from .service import DEFAULT_MAX_BODY_SIZE, Service

if TYPE_CHECKING:
    from fastapi import FastAPI
    from flask import Flask

    from .adapters.fastapi import DualserveFastAPI

__all__ = ["PipelinesSource", "asgi_app", "fastapi_app", "flask_app", "wsgi_app"]

#: A Registry, ``{name: wrapper object}``, or the path of a pipelines directory.
PipelinesSource = Registry | Mapping[str, Any] | str | os.PathLike[str]


def fastapi_app(
    pipelines: PipelinesSource, *, debug: bool = False, max_body_size: int | None = None, timeout: float | None = None
) -> DualserveFastAPI:
    """The FastAPI frontend alone: ``/{name}/run`` and ``/status``.

    :param pipelines: a :class:`Registry`, a mapping of names to wrapper objects, or a directory.
    :param debug: name the exception in 500 answers.
    :param max_body_size: the largest request body, in bytes (default 64 MiB); larger ones get 413.
    :param timeout: seconds a pipeline may take to answer; past it, 504 (default: no limit).
    """
    from .adapters import fastapi

    return fastapi.create_app(_service(pipelines, debug, max_body_size, timeout))


def flask_app(
    pipelines: PipelinesSource, *, debug: bool = False, max_body_size: int | None = None, timeout: float | None = None
) -> Flask:
    """The Flask frontend alone; parameters as for :func:`fastapi_app`."""
    from .adapters import flask

    return flask.create_app(_service(pipelines, debug, max_body_size, timeout))


def asgi_app(
    pipelines: PipelinesSource, *, debug: bool = False, max_body_size: int | None = None, timeout: float | None = None
) -> FastAPI:
    """FastAPI at ``/`` and Flask at ``/flask/`` in one ASGI app, for uvicorn."""
    from .mount import compose_asgi

    return compose_asgi(_service(pipelines, debug, max_body_size, timeout))


def wsgi_app(
    pipelines: PipelinesSource, *, debug: bool = False, max_body_size: int | None = None, timeout: float | None = None
) -> Flask:
    """Flask at ``/`` and FastAPI at ``/fastapi/`` in one WSGI app, for gunicorn and ``flask run``."""
    from .mount import compose_wsgi

    return compose_wsgi(_service(pipelines, debug, max_body_size, timeout))


def _service(pipelines: PipelinesSource, debug: bool, max_body_size: int | None, timeout: float | None) -> Service:
    if isinstance(pipelines, Registry):
        registry = pipelines
    elif isinstance(pipelines, (str, os.PathLike)):
        registry = Registry.from_directory(Path(pipelines))
    else:
        registry = Registry.from_wrappers(pipelines)
    limit = DEFAULT_MAX_BODY_SIZE if max_body_size is None else max_body_size
    return Service(registry, debug=debug, max_body_size=limit, timeout=timeout)
