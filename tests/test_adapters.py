"""Framework quirks: a response class that sends itself passes through on its own framework only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import flask
import pytest
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from dualserve import BasePipelineWrapper, fastapi_app, flask_app


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
