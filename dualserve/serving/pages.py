"""The API docs and the playground: pages and assets shipped as files, served by the core. No web framework.

Swagger UI comes from the ``flask-swagger-ui`` distribution's ``dist`` folder (Swagger UI 5, for
OpenAPI 3.1), located without importing that package, so ``/docs`` works on a machine with no
internet and the core still imports no framework. Pages use relative URLs only, so they work
wherever a frontend is mounted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["asset", "page"]

STATIC = Path(__file__).parent.parent / "static"


def _swagger_dist() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The Swagger UI assets are missing: pip install flask-swagger-ui")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


_PAGES = {"docs": "docs.html", "ui": "ui.html"}
_ASSETS = {
    ("docs", "swagger-ui.css"): ("swagger", "swagger-ui.css"),
    ("docs", "swagger-ui-bundle.js"): ("swagger", "swagger-ui-bundle.js"),
    ("docs", "favicon-32x32.png"): ("swagger", "favicon-32x32.png"),
    ("docs", "docs.js"): ("static", "docs.js"),
    ("ui", "ui.js"): ("static", "ui.js"),
    ("ui", "ui.css"): ("static", "ui.css"),
}


def page(name: str) -> Path | None:
    """The HTML file of ``/docs`` or ``/ui``."""
    filename = _PAGES.get(name)
    return STATIC / filename if filename else None


def asset(page_name: str, filename: str) -> Path | None:
    """A file under ``/docs/`` or ``/ui/``; only the listed ones, so no request names a path."""
    source = _ASSETS.get((page_name, filename))
    if source is None:
        return None
    folder, name = source
    return (_swagger_dist() if folder == "swagger" else STATIC) / name
