"""The route table: which endpoint answers a path. Standard library only.

One table for every frontend: the FastAPI and Flask frontends register a route for each entry
(and answer them ahead of their framework's dispatch with :func:`match`), pipeline names may not
shadow an entry (:data:`RESERVED_NAMES`), and a new route is one entry here plus its endpoint in
:class:`~dualserve.serving.service.Service`. Paths use Starlette's syntax: a ``{segment}`` in
braces is a parameter that matches one path segment.

Every method reaches the endpoint, which answers 405 with its own ``Allow`` (a framework's
method check would word it differently on each side).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["FASTAPI_PREFIX", "FLASK_PREFIX", "RESERVED_NAMES", "ROUTES", "Route", "match", "pipeline_route"]

#: Where each frontend is mounted inside the other (uvicorn: Flask at /flask; WSGI servers: FastAPI at /fastapi).
FLASK_PREFIX = "/flask"
FASTAPI_PREFIX = "/fastapi"


@dataclass(frozen=True)
class Route:
    """``path`` answered by the service's ``endpoint``, with ``fixed`` arguments added to the path's own."""

    path: str
    endpoint: str
    fixed: tuple[tuple[str, str], ...] = ()
    #: Whether a POST to it carries a body for the endpoint (the others never read one).
    reads_body: bool = False
    #: Whether answering it touches the disk, so an event loop hands it to a thread.
    blocking: bool = False
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)" for index, part in enumerate(parts))
        object.__setattr__(self, "_pattern", re.compile(regex))

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self._pattern.groupindex)

    def match(self, path: str) -> dict[str, str] | None:
        found = self._pattern.fullmatch(path)
        return None if found is None else {**found.groupdict(), **dict(self.fixed)}


ROUTES = (
    Route("/", "home"),
    Route("/favicon.ico", "page", (("page", "docs"), ("filename", "favicon-32x32.png")), blocking=True),
    Route("/status", "status"),
    Route("/openapi.json", "openapi"),
    Route("/docs", "page", (("page", "docs"),), blocking=True),
    Route("/docs/{filename}", "page", (("page", "docs"),), blocking=True),
    Route("/ui", "page", (("page", "ui"),), blocking=True),
    Route("/ui/{filename}", "page", (("page", "ui"),), blocking=True),
    Route("/{pipeline}/run", "run", reads_body=True),
)

#: Names that would shadow a route or a mount point if a pipeline had them.
RESERVED_NAMES = frozenset(
    {route.path.split("/")[1] for route in ROUTES if not route.path.startswith("/{") and route.path != "/"}
    | {FLASK_PREFIX.strip("/"), FASTAPI_PREFIX.strip("/")}
)


def pipeline_route(path: str, name: str) -> Route:
    """A route serving pipeline ``name`` at ``path`` of the application's own choosing (a legacy
    URL such as ``/files/{filename}``): its path parameters become arguments."""
    if "{pipeline}" in path:
        raise ValueError("A pipeline route's path cannot have a parameter called 'pipeline'.")
    return Route(path, "run", (("pipeline", name),), reads_body=True)


def match(path: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, dict[str, str]] | None:
    """The first route that answers ``path``, and its arguments."""
    for route in routes:
        arguments = route.match(path)
        if arguments is not None:
            return route, arguments
    return None
