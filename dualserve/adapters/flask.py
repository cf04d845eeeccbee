"""The Flask frontend: Werkzeug requests in, core Replies out as Flask responses. Translation only."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import IO, Any

import flask
from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.routing import Rule

from ..replies import FileBody, Reply, StreamBody, framework_error
from ..requests import Request
from ..service import Service

__all__ = ["create_app", "to_request", "to_response"]

FILE_CHUNK_SIZE = 1024 * 1024
logger = logging.getLogger("dualserve")


class _Response(flask.Response):
    # No text/html default and no computed Content-Length: the core sets both, or neither on purpose.
    default_mimetype = None
    automatically_set_content_length = False

    def get_wsgi_headers(self, environ: Any) -> Headers:
        # Werkzeug copies the headers here to fix Location and Content-Length; the core already
        # decided every header, so they go out as they are.
        return self.headers


def create_app(service: Service) -> flask.Flask:
    """A Flask app serving ``service``: ``/<name>/run`` and ``/status``."""
    app = flask.Flask("dualserve")
    # "//" is a 404 here, as on FastAPI, not a redirect to "/".
    app.url_map.merge_slashes = False
    _route(app, "/status", "status", lambda: to_response(service.status(_without_body(flask.request))))
    _route(app, "/<name>/run", "run", lambda name: to_response(_run(service, name)))
    # The same view under each known name: Werkzeug matches a static rule without the regex
    # work a converter costs on every request. Unknown names still reach the rule above.
    for name in service.registry.pipelines:
        _route(app, f"/{name}/run", f"run:{name}", functools.partial(_run_named, service, name))
    _route(app, "/openapi.json", "openapi", lambda: to_response(_openapi(service)))
    for page_name in ("docs", "ui"):
        view = functools.partial(_page, service, page_name)
        _route(app, f"/{page_name}", page_name, view)
        _route(app, f"/{page_name}/<filename>", f"{page_name}:asset", view)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
    app.extensions["dualserve"] = service
    service.provide_context("werkzeug", app.test_request_context)
    return app


def _route(app: flask.Flask, path: str, endpoint: str, view: Callable[..., Any]) -> None:
    # A Rule with no methods matches every method, so the core answers 405 with its own Allow,
    # for PROPFIND as for DELETE; Flask's add_url_rule always lists methods.
    app.url_map.add(Rule(path, endpoint=endpoint, methods=None))
    app.view_functions[endpoint] = view


def provide_context(service: Service) -> None:
    """Let wrappers that call Flask helpers (``send_file``) run on a frontend that is not Flask."""
    service.provide_context("werkzeug", flask.Flask("dualserve").test_request_context)


def _openapi(service: Service) -> Reply:
    request = flask.request
    return service.openapi(_without_body(request), request.script_root)


def _page(service: Service, name: str, filename: str | None = None) -> flask.Response:
    return to_response(service.page(_without_body(flask.request), name, filename))


def _run_named(service: Service, name: str) -> flask.Response:
    return to_response(_run(service, name))


def _run(service: Service, name: str) -> Reply:
    request = to_request(flask.request._get_current_object(), service)  # type: ignore[attr-defined]  # one proxy lookup
    if isinstance(request, Reply):
        return request
    outcome = service.prepare(name, request)
    return outcome if isinstance(outcome, Reply) else outcome.run_sync_within()


def to_request(request: flask.Request, service: Service) -> Request | Reply:
    """The core's view of a Flask request, or the core's answer to a body it cannot take."""
    if request.method != "POST":
        return _without_body(request)
    limit = service.max_body_size
    if request.content_length is not None and request.content_length > limit:
        return service.body_too_large()
    # A chunked body has no length to check first: read one byte past the limit to know.
    body = bytearray()
    try:
        while len(body) <= limit and (chunk := request.stream.read(min(65536, limit + 1 - len(body)))):
            body += chunk
    except ClientDisconnected:
        # Werkzeug's own check of the same thing, where the server does not set
        # wsgi.input_terminated (its dev server): the same JSON as below, not a bare "Bad Request".
        return service.body_incomplete()
    if len(body) > limit:
        return service.body_too_large()
    if request.content_length is not None and len(body) < request.content_length:
        return service.body_incomplete()  # the client left mid-body: run nothing
    return Request("POST", _EnvironHeaders(request.environ), request.query_string, bytes(body), "werkzeug")


def _without_body(request: flask.Request) -> Request:
    return Request(request.method, _EnvironHeaders(request.environ), request.query_string, native="werkzeug")


class _EnvironHeaders:
    """Request headers straight from the WSGI environ: the core reads a few per request, and
    Werkzeug's ``EnvironHeaders`` costs three times as much per lookup."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, key: str, /) -> str | None:
        name = key.upper().replace("-", "_")
        value: str | None = self.environ.get(name if name in _UNPREFIXED else f"HTTP_{name}")
        return value


_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def to_response(reply: Reply) -> flask.Response:
    """A Flask response sending exactly the reply's status, headers and body."""
    if reply.native is not None:
        native: flask.Response = reply.native
        return native
    body = reply.body
    response: flask.Response
    headers = reply.headers
    if isinstance(body, bytes):
        response = _Response(body, reply.status_code, headers)
        if reply.cleanups:
            response.call_on_close(reply.close)
    elif isinstance(body, FileBody):
        # Direct passthrough skips call_on_close, so the file itself runs the cleanups when closed.
        response = _Response(_file_iterable(body, reply.close), reply.status_code, headers, direct_passthrough=True)
    else:
        assert isinstance(body, StreamBody)
        response = _Response(_closing(body.chunks, reply.close), reply.status_code, headers, direct_passthrough=True)
    return response


def _file_iterable(body: FileBody, on_close: Callable[[], None]) -> Any:
    file = _RangeFile(body, on_close)
    wrapper = flask.request.environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        # The server's file wrapper (gunicorn: sendfile from the current offset, for
        # Content-Length bytes); the file itself stops at the range's end for plain reads.
        return wrapper(file, FILE_CHUNK_SIZE)
    return iter(file)


def _closing(chunks: Any, on_close: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        try:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        finally:
            on_close()


class _RangeFile:
    """The bytes of a FileBody as a binary file: reads stop at the range's end, and ``close()``
    also runs the reply's cleanups (deleting a temp file, say), since Flask's own ``call_on_close``
    never fires for a direct-passthrough response."""

    def __init__(self, body: FileBody, on_close: Callable[[], None]) -> None:
        self._file: IO[bytes] = open(body.path, "rb")
        self._file.seek(body.start)
        self._remaining = body.length
        self._on_close = on_close

    def read(self, size: int = -1) -> bytes:
        size = self._remaining if size < 0 else min(size, self._remaining)
        chunk = self._file.read(size)
        self._remaining -= len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        with self:
            while chunk := self.read(FILE_CHUNK_SIZE):
                yield chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._on_close()

    def __enter__(self) -> _RangeFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _http_exception(exc: HTTPException) -> flask.Response:
    allow = dict(exc.get_headers()).get("Allow")
    return to_response(framework_error(exc.code or 500, allow, flask.request.method))


def _unexpected(exc: Exception) -> flask.Response:
    # A failure that got past the core: the contract's JSON, never Flask's HTML 500.
    logger.error("Request failed in the Flask adapter", exc_info=exc)
    return to_response(framework_error(500, method=flask.request.method))
