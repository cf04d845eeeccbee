"""dualserve: write a pipeline wrapper once, serve it from FastAPI and Flask side by side."""

from __future__ import annotations

from .__version__ import __version__ as __version__
from .apps import asgi_app, fastapi_app, flask_app, wsgi_app
from .exceptions import Canceled, DualserveError, HTTPError, LoadError, ResolveError, ValidationError
from .media import Media
from .paths import safe_path
from .reporting import progress
from .serving.pipelines import Registry
from .uploads import UploadFile
from .wrapper import BasePipelineWrapper, cached, produces

__all__ = [
    "asgi_app",
    "BasePipelineWrapper",
    "cached",
    "Canceled",
    "DualserveError",
    "fastapi_app",
    "flask_app",
    "HTTPError",
    "LoadError",
    "Media",
    "produces",
    "progress",
    "Registry",
    "ResolveError",
    "safe_path",
    "UploadFile",
    "ValidationError",
    "wsgi_app",
]
