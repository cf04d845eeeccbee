"""Framework quirks: a response class that sends itself passes through on its own framework only;
the Flask app answers its pipeline routes without Flask's dispatch only while that changes nothing."""

from __future__ import annotations

import contextlib
import errno
import logging
import wsgiref.validate
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import flask
import pytest
import werkzeug.test
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from dualserve import BasePipelineWrapper, Registry, fastapi_app, flask_app
from dualserve.core.reply import Reply, StreamBody
from dualserve.frontends import flask as flask_adapter
from dualserve.frontends.fastapi import to_response
from dualserve.serving import files
from dualserve.serving.service import Service
from tests.wrappers import TempFileWrapper


class SelfSendingStarletteResponse(Response):
    """Overrides __call__, so its bytes cannot be read without running it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/x-custom")]})
        await send({"type": "http.response.body", "body": b"sent by itself"})


class SelfSendingWerkzeugResponse(flask.Response):
    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/x-custom")])
        return [b"sent by itself"]


class StarletteWrapper(BasePipelineWrapper):
    def run_api(self) -> Response:
        return SelfSendingStarletteResponse()


class WerkzeugWrapper(BasePipelineWrapper):
    def run_api(self) -> flask.Response:
        return SelfSendingWerkzeugResponse()


WRAPPERS = {"starlette_custom": StarletteWrapper(), "werkzeug_custom": WerkzeugWrapper()}


@pytest.fixture(scope="module")
def fastapi_client() -> TestClient:
    return TestClient(fastapi_app(WRAPPERS))


@pytest.fixture(scope="module")
def flask_client() -> flask.testing.FlaskClient:
    return flask_app(WRAPPERS).test_client()


def test_own_framework_passes_it_through(fastapi_client: TestClient, flask_client: flask.testing.FlaskClient) -> None:
    assert fastapi_client.get("/starlette_custom/run").content == b"sent by itself"
    assert flask_client.get("/werkzeug_custom/run").data == b"sent by itself"


def test_other_framework_refuses_it_with_json(
    fastapi_client: TestClient, flask_client: flask.testing.FlaskClient
) -> None:
    refused = fastapi_client.get("/werkzeug_custom/run")
    assert (refused.status_code, refused.json()) == (500, {"detail": "Pipeline execution failed"})
    refused_by_flask = flask_client.get("/starlette_custom/run")
    assert (refused_by_flask.status_code, refused_by_flask.get_json()) == (500, {"detail": "Pipeline execution failed"})


@pytest.mark.parametrize("body", ["bytes", "stream"])
def test_a_send_that_raises_because_the_client_left_ends_the_response_quietly(
    body: str, caplog: pytest.LogCaptureFixture
) -> None:
    """ASGI 2.4 servers (and the bridge that mounts FastAPI in Flask) may raise OSError from send()
    once the client is gone: the response ends, the generator and cleanups run, nothing is logged."""
    closed: list[str] = []

    def chunks() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 1024
        finally:
            closed.append("generator")

    reply_body: bytes | StreamBody = b"whole" if body == "bytes" else StreamBody(chunks())
    reply = Reply(200, [("content-type", "application/octet-stream")], reply_body, cleanups=[lambda: closed.append("")])
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the connection is closed")
        sent.append(message)

    async def receive() -> Message:
        await anyio.sleep_forever()  # the server has not noticed yet: only send() knows
        raise AssertionError

    scope: Scope = {"type": "http", "method": "GET"}
    with caplog.at_level(logging.DEBUG, logger="dualserve"):
        anyio.run(to_response(reply, Service(Registry.from_wrappers({}))), scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]
    assert closed == ([""] if body == "bytes" else ["generator", ""])
    assert caplog.records == []


# GET and HEAD on /<name>/run skip Flask's dispatch while the app adds nothing to it; the WSGI
# answer (status line, header list, body) must be the one Flask's dispatch sends.

DIRECT_CASES = [
    pytest.param("GET", "/bytes/run", {}, id="bytes"),
    pytest.param("HEAD", "/bytes/run", {}, id="head"),
    pytest.param("GET", "/range_path/run", {"Range": "bytes=0-9"}, id="206"),
    pytest.param("GET", "/range_bytes/run", {"Range": "bytes=0-9"}, id="range-ignored"),
    pytest.param("GET", "/range_bytes/run", {"Range": "bytes=10-"}, id="409-continuation"),
    pytest.param("GET", "/range_bytes/run", {"If-None-Match": "*"}, id="304"),
    pytest.param("GET", "/range_path/run", {"Range": "bytes=99999-"}, id="416"),
    pytest.param("GET", "/range_path/run", {"Range": "bytes=5-"}, id="file-range"),
    pytest.param("GET", "/stream/run", {}, id="stream"),
    pytest.param("HEAD", "/head_stream/run", {}, id="head-stream"),
    pytest.param("GET", "/image/run?format=jpeg", {"Accept": "application/json"}, id="negotiated"),
    pytest.param("GET", "/bytes/run?width=x", {}, id="422"),
    pytest.param("PUT", "/bytes/run", {}, id="405"),
    pytest.param("OPTIONS", "/bytes/run", {}, id="options"),
    pytest.param("DELETE", "/upload/run", {}, id="405-upload"),
    pytest.param("GET", "/http_error/run?status=409", {}, id="http-error"),
    pytest.param("GET", "/failing/run", {}, id="500"),
    pytest.param("GET", "/status_media/run", {}, id="202"),
    pytest.param("GET", "/fl_mimetype/run", {}, id="werkzeug-response"),
    pytest.param("GET", "/fl_send_file/run", {"Range": "bytes=0-3"}, id="send-file"),
]


def _wsgi_answer(app: Any, method: str, url: str, headers: dict[str, str]) -> tuple[str, list[tuple[str, str]], bytes]:
    environ = werkzeug.test.EnvironBuilder(url, method=method, headers=list(headers.items())).get_environ()
    app_iter, status, sent = werkzeug.test.run_wsgi_app(app, environ, buffered=True)
    # X-Request-ID is made anew for each request (tests/test_edge.py checks it).
    return status, [(k, v) for k, v in sent.to_wsgi_list() if k != "x-request-id"], b"".join(app_iter)


@pytest.fixture
def dispatch_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths Flask's own dispatch handled (counted where it matches the URL: a wrapped Flask
    method would itself send every request through the dispatch)."""
    calls: list[str] = []
    match = flask.ctx.RequestContext.match_request

    def counted(context: flask.ctx.RequestContext) -> None:
        if context.request.path != "/":  # not the bare context a wrapper importing Flask runs in
            calls.append(context.request.path)
        match(context)

    monkeypatch.setattr(flask.ctx.RequestContext, "match_request", counted)
    return calls


@pytest.mark.parametrize(("method", "url", "headers"), DIRECT_CASES)
def test_direct_answer_is_what_flask_dispatch_sends(
    service: Service, dispatch_calls: list[str], method: str, url: str, headers: dict[str, str]
) -> None:
    direct = flask_adapter.create_app(service)
    dispatched = flask_adapter.create_app(service)
    dispatched.before_request(lambda: None)
    answer = _wsgi_answer(wsgiref.validate.validator(direct), method, url, headers)
    assert dispatch_calls == []
    assert _wsgi_answer(wsgiref.validate.validator(dispatched), method, url, headers) == answer
    assert dispatch_calls == [url.split("?")[0]]


def _signal_receiver(app: flask.Flask) -> contextlib.AbstractContextManager[object]:
    def receiver(sender: object, **extra: object) -> None:
        pass

    return flask.signals.request_started.connected_to(receiver, app)


def _setting(key: str, value: object) -> Callable[[flask.Flask], None]:
    return lambda app: app.config.update({key: value})


CUSTOMISATIONS = [
    pytest.param(lambda app: app.before_request(lambda: None), id="before_request"),
    pytest.param(lambda app: app.after_request(lambda response: response), id="after_request"),
    pytest.param(lambda app: app.teardown_request(lambda exc: None), id="teardown_request"),
    pytest.param(lambda app: app.url_value_preprocessor(lambda endpoint, values: None), id="url_value_preprocessor"),
    pytest.param(lambda app: app.teardown_appcontext(lambda exc: None), id="teardown_appcontext"),
    pytest.param(lambda app: app.register_error_handler(ValueError, lambda exc: ("", 500)), id="error_handler"),
    pytest.param(
        lambda app: app.view_functions.update({"dualserve:/{pipeline}/run": lambda pipeline: "mine"}),
        id="view_replaced",
    ),
    pytest.param(_setting("SECRET_KEY", "session"), id="secret_key"),
    pytest.param(_setting("SERVER_NAME", "localhost"), id="server_name"),
    pytest.param(_setting("TRUSTED_HOSTS", ["localhost"]), id="trusted_hosts"),
    pytest.param(_signal_receiver, id="signal_receiver"),
]


@pytest.mark.parametrize("customise", CUSTOMISATIONS)
def test_anything_the_app_adds_sends_requests_through_flask(
    service: Service, dispatch_calls: list[str], customise: Callable[[flask.Flask], object]
) -> None:
    app = flask_adapter.create_app(service)
    customised = customise(app)
    with customised if isinstance(customised, contextlib.AbstractContextManager) else contextlib.nullcontext():
        app.test_client().get("/bytes/run")
    assert dispatch_calls == ["/bytes/run"]


def test_after_request_hook_sees_the_answer(service: Service) -> None:
    app = flask_adapter.create_app(service)

    @app.after_request
    def stamp(response: flask.Response) -> flask.Response:
        response.headers["x-stamp"] = "yes"
        return response

    assert app.test_client().get("/bytes/run").headers["x-stamp"] == "yes"


def test_middleware_and_post_keep_their_usual_path(service: Service, dispatch_calls: list[str]) -> None:
    app = flask_adapter.create_app(service)
    seen: list[str] = []
    inner = app.wsgi_app

    def middleware(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    app.wsgi_app = middleware  # type: ignore[method-assign]
    client = app.test_client()
    assert client.get("/bytes/run").status_code == 200
    assert client.post("/bytes/run", json={}).status_code == 200
    assert seen == ["/bytes/run", "/bytes/run"]
    assert dispatch_calls == ["/bytes/run"]  # the POST


def test_setup_after_a_direct_request_fails_as_after_any_request(service: Service) -> None:
    app = flask_adapter.create_app(service)
    app.test_client().get("/bytes/run")
    with pytest.raises(AssertionError, match="already handled its first request"):
        app.add_url_rule("/late", "late", lambda: "late")


def test_a_send_that_fails_for_another_reason_is_not_taken_for_a_client_that_left() -> None:
    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError(errno.ENOSPC, "No space left on device")  # say, a logging middleware's disk

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    reply = Reply(200, [("content-type", "application/octet-stream")], b"whole")
    with pytest.raises(OSError) as raised:
        anyio.run(
            to_response(reply, Service(Registry.from_wrappers({}))), {"type": "http", "method": "GET"}, receive, send
        )
    assert raised.value.errno == errno.ENOSPC


@pytest.mark.parametrize("hooked", [False, True], ids=["direct", "dispatched"])
def test_a_file_that_cannot_be_opened_at_send_time_is_a_json_500_and_still_deleted(
    hooked: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_many_files(*args: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    app = flask_app({"temp_file": TempFileWrapper()})
    if hooked:
        app.before_request(lambda: None)
    # The file is there when the run ends, and cannot be opened when it is to be sent.
    monkeypatch.setattr(files, "open", too_many_files, raising=False)
    response = app.test_client().get("/temp_file/run", query_string={"directory": str(tmp_path)})
    assert response.status_code == 500
    assert response.get_json() == {"detail": "Internal Server Error"}
    assert list(tmp_path.iterdir()) == []


def _config_value() -> dict[str, object]:
    """A helper in another module that reads the Flask app, as migrated code often does."""
    flask.g.seen = True
    return {"greeting": flask.current_app.config["GREETING"], "seen": flask.g.seen}


# Defined as if in a module that does not import Flask itself (tests.wrappers does not), so
# the service gives it no request context of its own: what it sees is the adapter's.
ConfigWrapper = type(
    "ConfigWrapper",
    (BasePipelineWrapper,),
    {"run_api": lambda self: _config_value(), "__module__": "tests.wrappers"},
)


@pytest.mark.parametrize("hooked", [False, True], ids=["direct", "dispatched"])
def test_code_a_wrapper_calls_has_the_flask_app_context(hooked: bool) -> None:
    app = flask_app({"config": ConfigWrapper()})
    app.config["GREETING"] = "hello"
    if hooked:
        app.before_request(lambda: None)
    for method in ("get", "post"):
        response = getattr(app.test_client(), method)("/config/run", json={} if method == "post" else None)
        assert response.get_json() == {"greeting": "hello", "seen": True}, method


# (An instance's own wsgi_app is middleware, which sees every request already: tested above.)
@pytest.mark.parametrize(
    ("where", "method"), [("class", "wsgi_app"), ("class", "full_dispatch_request"), ("instance", "process_response")]
)
def test_a_tracer_that_wraps_flask_sees_every_request(where: str, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracers (ddtrace, for one) wrap Flask's methods on the class: those requests are dispatched."""
    app = flask_app({"config": ConfigWrapper()})
    app.config["GREETING"] = "hello"
    seen: list[str] = []
    original = getattr(flask.Flask, method) if where == "class" else getattr(app, method)

    def traced(*args: Any, **kwargs: Any) -> Any:
        seen.append(method)
        return original(*args, **kwargs)

    monkeypatch.setattr(flask.Flask if where == "class" else app, method, traced)
    assert app.test_client().get("/config/run").get_json() == {"greeting": "hello", "seen": True}
    assert seen == [method]
