"""The ASGI entry point: ``uvicorn --factory dualserve.asgi:create_app``, configured by the environment.

FastAPI serves at ``/`` and Flask at ``/flask/``; ``DUALSERVE_PIPELINES_DIR`` names the wrappers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .apps import asgi_app
from .serving import config

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app() -> FastAPI:
    return asgi_app(config.pipelines_dir(), **config.settings())
