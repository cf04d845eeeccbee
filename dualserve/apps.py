"""Python factories: build each app from wrapper objects, a directory, or a Registry.

The frameworks are imported inside each factory, not at the top, so that a wrapper's
``from dualserve import Media`` never imports Flask or FastAPI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .serving.aio import portal
from .serving.config import Settings, default_state_dir
from .serving.pipelines import Registry
from .serving.service import Service

if TYPE_CHECKING:
    from fastapi import FastAPI
    from typing_extensions import Unpack

    from .frontends.fastapi import DualserveFastAPI
    from .frontends.flask import DualserveFlask

__all__ = ["PipelinesSource", "asgi_app", "fastapi_app", "flask_app", "wsgi_app"]

#: A Registry, ``{name: wrapper object}``, or the path of a pipelines directory.
PipelinesSource = Registry | Mapping[str, Any] | str | os.PathLike[str]


def fastapi_app(pipelines: PipelinesSource, **settings: Unpack[Settings]) -> DualserveFastAPI:
    """The FastAPI frontend alone: ``/{name}/run`` and ``/status``.

    :param pipelines: a :class:`Registry`, a mapping of names to wrapper objects, or a directory.
    :param settings: ``debug``, ``max_body_size``, ``timeout``, ``threads``, ``max_streams``; see
        :class:`~dualserve.serving.config.Settings`.
    """
    from .frontends import fastapi

    portal.adopt()  # built by a server on its loop (uvicorn's factory): async wrapper code runs there
    return fastapi.create_app(_service(pipelines, settings))


def flask_app(pipelines: PipelinesSource, **settings: Unpack[Settings]) -> DualserveFlask:
    """The Flask frontend alone; parameters as for :func:`fastapi_app`."""
    from .frontends import flask

    return flask.create_app(_service(pipelines, settings))


def asgi_app(pipelines: PipelinesSource, **settings: Unpack[Settings]) -> FastAPI:
    """FastAPI at ``/`` and Flask at ``/flask/`` in one ASGI app, for uvicorn."""
    from .frontends.compose import compose_asgi

    portal.adopt()  # as in fastapi_app: the Flask mount's threads then call into the server's loop
    return compose_asgi(_service(pipelines, settings))


def wsgi_app(pipelines: PipelinesSource, **settings: Unpack[Settings]) -> DualserveFlask:
    """Flask at ``/`` and FastAPI at ``/fastapi/`` in one WSGI app, for gunicorn and ``flask run``."""
    from .frontends.compose import compose_wsgi

    return compose_wsgi(_service(pipelines, settings))


def _service(pipelines: PipelinesSource, settings: Settings) -> Service:
    # None stands for the default, as the keywords were documented before there were defaults to name.
    chosen: dict[str, Any] = {key: value for key, value in settings.items() if value is not None}
    broker, store, s3_redirect = chosen.pop("broker", None), chosen.pop("store", None), chosen.pop("s3_redirect", False)
    if isinstance(pipelines, Registry):
        registry = pipelines
    elif isinstance(pipelines, (str, os.PathLike)):
        # Scaled out, this process holds no model: the workers run setup(), it only validates.
        registry = Registry.from_directory(Path(pipelines), set_up=broker is None)
    else:
        registry = Registry.from_wrappers(pipelines, set_up=broker is None)
    cluster = None
    if broker is not None:
        from .cluster.connection import Cluster

        if store is None:
            raise ValueError("A broker needs a store: the shared directory or s3://BUCKET/PREFIX of the results.")
        state_dir = Path(chosen.get("state_dir") or default_state_dir()).resolve()
        cluster = Cluster(broker, store, state_dir, role="api", s3_redirect=s3_redirect)
    return Service(registry, cluster=cluster, **chosen)
