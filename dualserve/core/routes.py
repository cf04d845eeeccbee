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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FASTAPI_PREFIX", "FLASK_PREFIX", "RESERVED_NAMES", "ROUTES", "Route", "match", "pipeline_route"]

#: Where each frontend is mounted inside the other (uvicorn: Flask at /flask; WSGI servers: FastAPI at /fastapi).
FLASK_PREFIX = "/flask"
FASTAPI_PREFIX = "/fastapi"
# The methods a pipeline answers, in Allow's order.
_PIPELINE_METHODS = ("GET", "HEAD", "POST")


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
    #: A pipeline route's methods (HEAD wherever GET is), such as a legacy route's; None: the pipeline's own.
    methods: tuple[str, ...] | None = None
    #: How a pipeline route writes a JSON result: "dualserve" (the contract's) or "flask" (as ``jsonify``).
    json: Literal["dualserve", "flask"] = "dualserve"
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    #: The path up to its first parameter: a path that does not start with it is not tried.
    _literal: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)" for index, part in enumerate(parts))
        object.__setattr__(self, "_pattern", re.compile(regex))
        object.__setattr__(self, "_literal", parts[0])

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self._pattern.groupindex)

    def match(self, path: str) -> dict[str, str] | None:
        if not path.startswith(self._literal):
            return None
        if self._literal == self.path:  # no parameter: the path itself
            return dict(self.fixed) if path == self.path else None
        found = self._pattern.fullmatch(path)
        return None if found is None else {**found.groupdict(), **dict(self.fixed)}


ROUTES = (
    Route("/", "home"),
    Route("/favicon.ico", "page", (("page", "docs"), ("filename", "favicon-32x32.png")), blocking=True),
    Route("/status", "status"),
    # Prometheus text; job counts come from the records, so it may touch the disk.
    Route("/metrics", "metrics", blocking=True),
    Route("/openapi.json", "openapi"),
    Route("/docs", "page", (("page", "docs"),), blocking=True),
    Route("/docs/{filename}", "page", (("page", "docs"),), blocking=True),
    Route("/ui", "page", (("page", "ui"),), blocking=True),
    Route("/ui/{filename}", "page", (("page", "ui"),), blocking=True),
    # The jobs (docs/contract.md section 6): records and blobs on disk, so every one blocks.
    Route("/jobs/{job}", "job", blocking=True),
    Route("/jobs/{job}/result", "job_result", blocking=True),
    Route("/jobs/{job}/events", "job_events", blocking=True),
    Route("/{pipeline}/jobs", "submit", reads_body=True, blocking=True),
    Route("/{pipeline}/run", "run", reads_body=True),
)

#: Names that would shadow a route or a mount point if a pipeline had them.
RESERVED_NAMES = frozenset(
    {route.path.split("/")[1] for route in ROUTES if not route.path.startswith("/{") and route.path != "/"}
    | {FLASK_PREFIX.strip("/"), FASTAPI_PREFIX.strip("/")}
)


def pipeline_route(
    path: str,
    name: str,
    methods: Iterable[str] | None = None,
    json: Literal["dualserve", "flask"] = "dualserve",
) -> Route:
    """A route serving pipeline ``name`` at ``path`` of the application's own choosing (a legacy
    URL such as ``/files/{filename}``): its path parameters become arguments, validated with the
    others and located ``["path", name]`` in a 422.

    :param methods: the methods it answers, such as the legacy route's ``("GET",)``; HEAD follows
        GET, any other method is a 405 with ``Allow``. Default: the pipeline's own (GET, HEAD and
        POST; POST alone for uploads). A pipeline answers nothing but GET, HEAD and POST.
    :param json: ``"flask"`` writes a JSON result as Flask's ``jsonify`` does (sorted keys, ASCII
        escapes, a trailing newline), for a route that must answer as the Flask view it replaces.
    """
    if "{pipeline}" in path:
        raise ValueError("A pipeline route's path cannot have a parameter called 'pipeline'.")
    if json not in ("dualserve", "flask"):
        raise ValueError(f"json must be 'dualserve' or 'flask', not {json!r}.")
    chosen: tuple[str, ...] | None = None
    if methods is not None:
        if isinstance(methods, str):
            raise TypeError(f"methods is a sequence of methods, such as ({methods!r},), not a string.")
        wanted = {method.upper() for method in methods}
        if not wanted or not wanted <= set(_PIPELINE_METHODS):
            raise ValueError(f"A pipeline route answers some of GET, HEAD and POST, not {sorted(wanted)}.")
        if "GET" in wanted:
            wanted.add("HEAD")
        chosen = tuple(method for method in _PIPELINE_METHODS if method in wanted)
    return Route(path, "run", (("pipeline", name),), reads_body=True, methods=chosen, json=json)


def match(path: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, dict[str, str]] | None:
    """The first route that answers ``path``, and its arguments."""
    for route in routes:
        arguments = route.match(path)
        if arguments is not None:
            return route, arguments
    return None
