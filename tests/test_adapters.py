"""Framework quirks: a response class that sends itself passes through on its own framework only."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import flask
import pytest
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from dualserve import BasePipelineWrapper, fastapi_app, flask_app
from dualserve.adapters.fastapi import to_response
from dualserve.replies import Reply, StreamBody


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
        anyio.run(to_response(reply), scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]
    assert closed == ([""] if body == "bytes" else ["generator", ""])
    assert caplog.records == []
