"""The Flask frontend: Werkzeug requests in, core Replies out as Flask responses. Translation only.

GET and HEAD on ``/<name>/run`` are answered before Flask's request dispatch while nothing the
app holds would take part in it (:class:`DualserveFlask`); every other request, and those too as
soon as the app has request hooks, signal receivers or error handlers of its own, goes through
Flask as usual.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import flask
from flask import signals
from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule
from werkzeug.wsgi import ClosingIterator

from ..core.reply import FileBody, Reply, StreamBody, discard, framework_error
from ..core.request import Request
from ..serving.service import Service

__all__ = ["DualserveFlask", "create_app", "to_request", "to_response"]

FILE_CHUNK_SIZE = 1024 * 1024
logger = logging.getLogger("dualserve")
WSGIEnviron = dict[str, Any]


class _Response(flask.Response):
    # No text/html default and no computed Content-Length: the core sets both, or neither on purpose.
    default_mimetype = None
    automatically_set_content_length = False

    def get_wsgi_headers(self, environ: Any) -> Headers:
        # Werkzeug copies the headers here to fix Location and Content-Length; the core already
        # decided every header, so they go out as they are.
        return self.headers


class DualserveFlask(flask.Flask):
    """Flask, with GET and HEAD on ``/<name>/run`` answered before its request dispatch for as
    long as that dispatch would add nothing to them.

    The view's answer is final (every header decided by the core), and while the app has no hook,
    signal receiver, error handler, session or host setting of its own, Flask's dispatch around it
    (request and app contexts, URL matching, a null session, a response object) only costs time:
    about 30 microseconds a request, more than the rest of the request in process. Middleware set
    with ``app.wsgi_app = M(app.wsgi_app)`` wraps this method, so it sees these requests too.

    POST stays with Flask: its request object reads the body under ``MAX_CONTENT_LENGTH`` and
    hands a broken body to the app's error handlers, and a run with a body gains little here.
    """

    def __init__(self, service: Service) -> None:
        # No static folder: Flask would serve the package's own static/ at /static/, FastAPI does not.
        super().__init__("dualserve", static_folder=None)
        self.extensions["dualserve"] = service
        #: ``PATH_INFO`` -> (pipeline name, endpoint, view). Flask's URL map gives these paths to
        #: these views even when the app adds a rule for the same path: the first rule added wins.
        self._direct_routes: dict[str, tuple[str, str, Callable[..., Any]]] = {}

    def _add_direct_route(self, path: str, name: str, endpoint: str, view: Callable[..., Any]) -> None:
        """Serve pipeline ``name`` at ``path`` (a static rule) through ``view``, directly when possible."""
        _route(self, path, endpoint, view)
        self._direct_routes[path] = (name, endpoint, view)

    def wsgi_app(self, environ: WSGIEnviron, start_response: Any) -> Iterable[bytes]:
        route = self._direct_routes.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if route is None or method == "POST" or not self._dispatch_adds_nothing(route, environ):
            return super().wsgi_app(environ, start_response)
        # Flask records a first request this way; setup methods called from now on fail as they would.
        self._got_first_request = True
        service: Service = self.extensions["dualserve"]
        try:
            # The run has the app context (current_app, g), as in a dispatched request: code the
            # wrapper calls may use them. A request context would cost what skipping Flask saves
            # (URL matching, the session); a wrapper that imports Flask gets the service's bare
            # request context, the same on every frontend.
            with self.app_context():
                reply = _run(service, route[0], _without_body(environ))
        except Exception as exc:
            # No body is read here, so no Werkzeug HTTPException: the app's Exception handler's answer.
            reply = _failure(exc, method)
        return _send(reply, environ, start_response)

    def _dispatch_adds_nothing(self, route: tuple[str, str, Callable[..., Any]], environ: WSGIEnviron) -> bool:
        """Whether Flask's dispatch would send the view's answer as it is: the path's view is still
        ours; no request hook, signal receiver or error handler but the adapter's; no session (no
        secret key); no host check; no test client keeping the context. Checked on every request,
        as any of it may be set once the app is built."""
        _, endpoint, view = route
        if self.view_functions.get(endpoint) is not view:
            return False
        # Our routes belong to no blueprint: only the app's own hooks and handlers (key None) apply.
        if (
            self.before_request_funcs.get(None)
            or self.after_request_funcs.get(None)
            or self.teardown_request_funcs.get(None)
            or self.url_value_preprocessors.get(None)
            or self.teardown_appcontext_funcs
        ):
            return False
        for signal in _DISPATCH_SIGNALS:
            if signal.receivers:
                return False
        for by_class in self.error_handler_spec.get(None, {}).values():
            if not _OWN_HANDLERS.issuperset(by_class.values()):
                return False
        config = self.config
        if config["SECRET_KEY"] or self.session_interface is not flask.Flask.session_interface:
            return False
        if config["SERVER_NAME"] or config["TRUSTED_HOSTS"] is not None or self.url_map.host_matching:
            return False
        if "werkzeug.debug.preserve_context" in environ:
            return False
        return _flask_as_shipped(self)


# Flask sends these around each request it dispatches; a receiver means someone listens for ours.
_DISPATCH_SIGNALS = (
    signals.request_started,
    signals.request_finished,
    signals.request_tearing_down,
    signals.got_request_exception,
    signals.appcontext_pushed,
    signals.appcontext_popped,
    signals.appcontext_tearing_down,
)


def create_app(service: Service) -> DualserveFlask:
    """A Flask app serving ``service``: ``/<name>/run`` and ``/status``."""
    app = DualserveFlask(service)
    # "//" is a 404 here, as on FastAPI, not a redirect to "/".
    app.url_map.merge_slashes = False
    _route(app, "/status", "status", lambda: to_response(service.status(_without_body(flask.request.environ))))
    _route(app, "/<name>/run", "run", functools.partial(_run_view, service))
    # The same view under each known name: Werkzeug matches a static rule without the regex
    # work a converter costs on every request. Unknown names still reach the rule above.
    for name in service.registry.pipelines:
        app._add_direct_route(f"/{name}/run", name, f"run:{name}", functools.partial(_run_view, service, name))
    _route(app, "/openapi.json", "openapi", lambda: to_response(_openapi(service)))
    for page_name in ("docs", "ui"):
        view = functools.partial(_page, service, page_name)
        _route(app, f"/{page_name}", page_name, view)
        _route(app, f"/{page_name}/<filename>", f"{page_name}:asset", view)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
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
    return service.openapi(_without_body(request.environ), request.script_root)


def _page(service: Service, name: str, filename: str | None = None) -> flask.Response:
    return to_response(service.page(_without_body(flask.request.environ), name, filename))


def _run_view(service: Service, name: str) -> flask.Response:
    request = flask.request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    return to_response(_run(service, name, to_request(request, service)))


def _run(service: Service, name: str, request: Request | Reply) -> Reply:
    if isinstance(request, Reply):
        return request
    outcome = service.prepare(name, request)
    return outcome if isinstance(outcome, Reply) else outcome.run_sync_within()


def to_request(request: flask.Request, service: Service) -> Request | Reply:
    """The core's view of a Flask request, or the core's answer to a body it cannot take."""
    if request.method != "POST":
        return _without_body(request.environ)
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
    except Exception as exc:
        # The server's input stream refused the body (a bad chunk): the client's fault, a 400.
        return service.body_malformed(exc)
    if len(body) > limit:
        return service.body_too_large()
    if request.content_length is not None and len(body) < request.content_length:
        return service.body_incomplete()  # the client left mid-body: run nothing
    return Request("POST", _EnvironHeaders(request.environ), request.query_string, bytes(body), "werkzeug")


def _without_body(environ: WSGIEnviron) -> Request:
    # Method and query string as Werkzeug's Request reads them, without building one.
    method = environ.get("REQUEST_METHOD", "GET").upper()
    query_string = environ.get("QUERY_STRING", "").encode("latin-1")
    return Request(method, _EnvironHeaders(environ), query_string, framework="werkzeug")


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
    if reply.passthrough is not None:
        passthrough: flask.Response = reply.passthrough
        return passthrough
    body = reply.body
    response: flask.Response
    headers = reply.headers
    if isinstance(body, bytes):
        response = _Response(body, reply.status_code, headers)
        if reply.cleanups:
            response.call_on_close(reply.close)
    elif isinstance(body, FileBody):
        # Direct passthrough skips call_on_close, so the file itself runs the cleanups when closed.
        file = _file_iterable(body, reply.close, flask.request.environ)  # may raise: the handler's JSON 500
        response = _Response(file, reply.status_code, headers, direct_passthrough=True)
    else:
        assert isinstance(body, StreamBody)
        response = _Response(_closing(body.chunks, reply.close), reply.status_code, headers, direct_passthrough=True)
    return response


def _send(reply: Reply, environ: WSGIEnviron, start_response: Any) -> Iterable[bytes]:
    """Send ``reply`` as the response from :func:`to_response` sends itself, without building one:
    Werkzeug's status line, the reply's headers as they are, and no body for HEAD, 1xx, 204, 304."""
    if reply.passthrough is not None:
        passthrough: Iterable[bytes] = reply.passthrough(environ, start_response)
        return passthrough
    status = reply.status_code
    body = reply.body
    if environ["REQUEST_METHOD"] == "HEAD" or 100 <= status < 200 or status in (204, 304):
        # No body, as Werkzeug sends none. The core left it empty already (Media refuses 1xx and
        # 204); discard() would close a stream or file all the same.
        start_response(_status_line(status), reply.headers)
        return ClosingIterator((), functools.partial(discard, reply))
    if isinstance(body, FileBody):
        try:  # opened before the status line goes out, so a failure can still be a JSON 500
            file = _file_iterable(body, reply.close, environ)
        except OSError as exc:
            return _send(_failure(exc, environ["REQUEST_METHOD"]), environ, start_response)
        start_response(_status_line(status), reply.headers)
        return file
    start_response(_status_line(status), reply.headers)
    if isinstance(body, StreamBody):
        return _closing(body.chunks, reply.close)
    return ClosingIterator((body,), reply.close) if reply.cleanups else (body,)


@functools.cache
def _status_line(status_code: int) -> str:
    # Spelled as Werkzeug's Response spells it ("206 PARTIAL CONTENT"), so both paths send one line.
    return f"{status_code} {HTTP_STATUS_CODES.get(status_code, 'unknown').upper()}"


def _file_iterable(body: FileBody, on_close: Callable[[], None], environ: WSGIEnviron) -> Iterable[bytes]:
    try:
        file = _RangeFile(body, on_close)
    except OSError:
        on_close()  # a file that cannot be opened now: its cleanups (a temp file) still run
        raise
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        # The server's file wrapper (gunicorn: sendfile from the current offset, for
        # Content-Length bytes); the file itself stops at the range's end for plain reads.
        wrapped: Iterable[bytes] = wrapper(file, FILE_CHUNK_SIZE)
        return wrapped
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
    return to_response(_failure(exc, flask.request.method))


def _failure(exc: Exception, method: str) -> Reply:
    # A failure that got past the core: the contract's JSON, never Flask's HTML 500.
    logger.error("Request failed in the Flask adapter", exc_info=exc)
    return framework_error(500, method=method)


_OWN_HANDLERS = frozenset({_http_exception, _unexpected})

# Flask's methods that a dispatched request goes through, as Flask ships them. A tracer that wraps
# them on the class (ddtrace wraps Flask.wsgi_app and its friends) or a subclass or instance that
# replaces one expects to see every request: then every request is dispatched.
_DISPATCH_METHODS = (
    "full_dispatch_request",
    "dispatch_request",
    "preprocess_request",
    "process_response",
    "finalize_request",
    "make_response",
    "handle_user_exception",
    "handle_exception",
    "do_teardown_request",
    "do_teardown_appcontext",
    "request_context",
    "app_context",
)
_SHIPPED = {name: getattr(flask.Flask, name) for name in (*_DISPATCH_METHODS, "wsgi_app")}


def _flask_as_shipped(app: DualserveFlask) -> bool:
    if flask.Flask.wsgi_app is not _SHIPPED["wsgi_app"]:
        return False
    cls = type(app)
    return not any(getattr(cls, name) is not _SHIPPED[name] or name in app.__dict__ for name in _DISPATCH_METHODS)
