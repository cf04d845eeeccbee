"""The Flask frontend: Werkzeug requests in, core Replies out as Flask responses. Translation only.

Every route of :data:`~dualserve.core.routes.ROUTES` is a rule of the app. GET and HEAD on them
are answered before Flask's request dispatch while nothing the app holds would take part in it
(:class:`DualserveFlask`); every other request, and those too as soon as the app has request
hooks, signal receivers or error handlers of its own, goes through Flask as usual.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import flask
from flask import signals
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule
from werkzeug.wsgi import ClosingIterator, get_input_stream

from ..core import routes
from ..core.reply import FileBody, Reply, StreamBody, framework_error
from ..core.request import Request
from ..core.returns import FILE_CHUNK_SIZE
from ..core.streams import close_iterator
from ..serving.bodies import declared_length, read_body
from ..serving.files import RangeFile
from ..serving.service import Service

__all__ = ["DualserveFlask", "create_app", "to_request", "to_response"]

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
    """Flask, with GET and HEAD on the core's routes answered before its request dispatch for as
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
        # "//" is a 404 here, as on FastAPI, not a redirect to "/".
        self.url_map.merge_slashes = False
        #: The core's routes and the pipeline routes added, in the order they are matched.
        self._direct_routes: tuple[routes.Route, ...] = ()
        for route in routes.ROUTES:
            self._add_route(route)

    def add_pipeline_route(
        self,
        path: str,
        name: str,
        methods: Iterable[str] | None = None,
        json: Literal["dualserve", "flask"] = "dualserve",
    ) -> None:
        """Serve pipeline ``name`` at ``path`` too, such as a legacy URL (``/files/{filename}``);
        the arguments are :func:`~dualserve.core.routes.pipeline_route`'s. ``path`` is written as for
        FastAPI, with ``{}``."""
        self._add_route(routes.pipeline_route(path, name, methods, json), first=True)

    def _add_route(self, route: routes.Route, first: bool = False) -> None:
        rule = route.path.replace("{", "<").replace("}", ">")
        # A Rule with no methods matches every method, so the core answers 405 with its own Allow,
        # for PROPFIND as for DELETE; Flask's add_url_rule always lists methods.
        self.url_map.add(Rule(rule, endpoint=_endpoint(route), methods=None))
        self.view_functions[_endpoint(route)] = functools.partial(_view, self.extensions["dualserve"], route)
        self._direct_routes = (route, *self._direct_routes) if first else (*self._direct_routes, route)

    def wsgi_app(self, environ: WSGIEnviron, start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        found = None if method == "POST" else routes.match(environ.get("PATH_INFO", ""), self._direct_routes)
        if found is None or not self._dispatch_adds_nothing(found[0], environ):
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
                reply = answer(service, found[0], found[1], environ)
        except Exception as exc:
            # No body is read here, so no Werkzeug HTTPException: the app's Exception handler's answer.
            reply = _failure(exc, method)
        return _send(reply, environ, start_response)

    def _dispatch_adds_nothing(self, route: routes.Route, environ: WSGIEnviron) -> bool:
        """Whether Flask's dispatch would send the view's answer as it is: the path's view is still
        ours; no request hook, signal receiver or error handler but the adapter's; no session (no
        secret key); no host check; no test client keeping the context. Checked on every request,
        as any of it may be set once the app is built."""
        view = self.view_functions.get(_endpoint(route))
        if not isinstance(view, functools.partial) or view.func is not _view:
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
    """A Flask app serving ``service``: every route of the core's table."""
    app = DualserveFlask(service)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
    service.provide_context("werkzeug", app.test_request_context)
    return app


def _endpoint(route: routes.Route) -> str:
    return f"dualserve:{route.path}"


def _view(service: Service, route: routes.Route, **path_arguments: str) -> flask.Response:
    environ = flask.request.environ
    return to_response(answer(service, route, {**path_arguments, **dict(route.fixed)}, environ))


def answer(service: Service, route: routes.Route, arguments: dict[str, str], environ: WSGIEnviron) -> Reply:
    """The core's reply to ``route``, the pipeline run in this thread."""
    arrived = time.time_ns()
    request = to_request(environ, service, route.reads_body)
    if isinstance(request, Reply):
        return service.finish(route, arguments, None, request, arrived)
    outcome = service.answer(route, arguments, request, environ.get("SCRIPT_NAME", "").rstrip("/"))
    reply = outcome if isinstance(outcome, Reply) else outcome.run_sync()
    return service.finish(route, arguments, request, reply, arrived)


def to_request(environ: WSGIEnviron, service: Service, reads_body: bool = True) -> Request | Reply:
    """The core's view of a WSGI request, or the core's answer to a body it cannot take."""
    # Method and query string as Werkzeug's Request reads them, without building one.
    method = environ.get("REQUEST_METHOD", "GET").upper()
    query_string = environ.get("QUERY_STRING", "").encode("latin-1")
    headers = _EnvironHeaders(environ)
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    client = environ.get("REMOTE_ADDR", "")
    if method != "POST" or not reads_body:
        return Request(method, headers, query_string, framework="werkzeug", path=path, client=client)
    # Werkzeug's input stream, as Flask's request.stream: bounded by Content-Length, or read to
    # its end where the server says the input is terminated (a chunked body).
    stream = get_input_stream(environ, max_content_length=None)
    body = read_body(stream.read, declared_length(environ.get("CONTENT_LENGTH")), service.max_body_size)
    if isinstance(body, Reply):
        return body
    return Request("POST", headers, query_string, body, framework="werkzeug", path=path, client=client)


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
        if reply.cleanups or reply.finished:
            response.call_on_close(reply.close)
    elif isinstance(body, FileBody):
        file = _file_iterable(body, reply.close, flask.request.environ)  # may raise: the handler's JSON 500
        response = _Response(file, reply.status_code, headers, direct_passthrough=True)
    else:
        assert isinstance(body, StreamBody)
        response = _Response(_closing(body.chunks, reply.close), reply.status_code, headers, direct_passthrough=True)
    return response


def _send(reply: Reply, environ: WSGIEnviron, start_response: Any) -> Iterable[bytes]:
    """Send ``reply`` as the response from :func:`to_response` sends itself, without building one:
    Werkzeug's status line and the reply's headers and body as they are (the core has already left
    no body for HEAD, 1xx, 204 and 304)."""
    if reply.passthrough is not None:
        passthrough: Iterable[bytes] = reply.passthrough(environ, start_response)
        return passthrough
    body = reply.body
    if isinstance(body, FileBody):
        try:  # opened before the status line goes out, so a failure can still be a JSON 500
            file = _file_iterable(body, reply.close, environ)
        except OSError as exc:
            return _send(_failure(exc, environ["REQUEST_METHOD"]), environ, start_response)
        start_response(_status_line(reply.status_code), reply.headers)
        return file
    start_response(_status_line(reply.status_code), reply.headers)
    if isinstance(body, StreamBody):
        return _closing(body.chunks, reply.close)
    return ClosingIterator((body,), reply.close) if reply.cleanups or reply.finished else (body,)


@functools.cache
def _status_line(status_code: int) -> str:
    # Spelled as Werkzeug's Response spells it ("206 PARTIAL CONTENT"), so both paths send one line.
    return f"{status_code} {HTTP_STATUS_CODES.get(status_code, 'unknown').upper()}"


def _file_iterable(body: FileBody, on_close: Callable[[], None], environ: WSGIEnviron) -> Iterable[bytes]:
    # Direct passthrough skips call_on_close, so the file itself runs the cleanups when closed.
    file = RangeFile(body, on_close)
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
            close_iterator(chunks)
        finally:
            on_close()


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
