"""Framework quirks: each frontend passes its own framework's Response objects through untouched."""

from __future__ import annotations

import flask
import pytest
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.testclient import TestClient

from dualserve import BasePipelineWrapper, fastapi_app, flask_app

from .wrappers import DATA, png_bytes


class StarletteResponseWrapper(BasePipelineWrapper):
    def run_api(self) -> Response:
        return Response(
            png_bytes(), media_type="image/png", headers={"Content-Disposition": 'inline; filename="x.png"'}
        )


class StarletteFileWrapper(BasePipelineWrapper):
    def run_api(self) -> FileResponse:
        return FileResponse(DATA / "sample.png", media_type="image/png", filename="result.png")


class StarletteStreamWrapper(BasePipelineWrapper):
    def run_api(self) -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]), media_type="text/plain")


class WerkzeugResponseWrapper(BasePipelineWrapper):
    def run_api(self) -> flask.Response:
        return flask.Response(png_bytes(), mimetype="image/png")


WRAPPERS = {
    "starlette_response": StarletteResponseWrapper(),
    "starlette_file": StarletteFileWrapper(),
    "starlette_stream": StarletteStreamWrapper(),
    "werkzeug_response": WerkzeugResponseWrapper(),
}


@pytest.fixture(scope="module")
def fastapi_client() -> TestClient:
    return TestClient(fastapi_app(WRAPPERS))


@pytest.fixture(scope="module")
def flask_client() -> flask.testing.FlaskClient:
    return flask_app(WRAPPERS).test_client()


def test_fastapi_passes_starlette_responses_through(fastapi_client: TestClient) -> None:
    response = fastapi_client.get("/starlette_response/run")
    assert (response.status_code, response.headers["content-type"]) == (200, "image/png")
    assert response.content == png_bytes()
    assert response.headers["content-disposition"] == 'inline; filename="x.png"'
    file = fastapi_client.get("/starlette_file/run")
    assert file.content == (DATA / "sample.png").read_bytes()
    assert file.headers["content-disposition"] == 'attachment; filename="result.png"'
    assert fastapi_client.get("/starlette_stream/run").content == b"ab"


def test_flask_passes_werkzeug_responses_through(flask_client: flask.testing.FlaskClient) -> None:
    response = flask_client.get("/werkzeug_response/run")
    assert (response.status_code, response.headers["content-type"]) == (200, "image/png")
    assert response.data == png_bytes()


@pytest.mark.parametrize("name", ["werkzeug_response"])
def test_fastapi_refuses_a_werkzeug_response_with_json(fastapi_client: TestClient, name: str) -> None:
    response = fastapi_client.get(f"/{name}/run")
    assert response.status_code == 500
    assert response.json() == {"detail": "Pipeline execution failed"}


@pytest.mark.parametrize("name", ["starlette_response", "starlette_file", "starlette_stream"])
def test_flask_refuses_a_starlette_response_with_json(flask_client: flask.testing.FlaskClient, name: str) -> None:
    response = flask_client.get(f"/{name}/run")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "Pipeline execution failed"}
