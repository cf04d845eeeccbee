"""The WSGI entry point: ``flask --app dualserve.wsgi run`` or ``gunicorn 'dualserve.wsgi:create_app()'``.

Flask serves at ``/`` and FastAPI at ``/fastapi/``; ``DUALSERVE_PIPELINES_DIR`` names the wrappers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .apps import wsgi_app
from .serving import config

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]


def create_app() -> Flask:
    return wsgi_app(config.pipelines_dir(), **config.settings())
