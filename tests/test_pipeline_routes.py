"""Pipeline routes (``add_pipeline_route``) on every frontend: path parameters as arguments located
``["path", name]``, a legacy route's methods, and JSON written as Flask's ``jsonify`` writes it."""

from __future__ import annotations

import datetime
import decimal
import uuid
import wsgiref.validate
from collections.abc import Iterator
from typing import Any

import flask
import httpx2
import pytest
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from dualserve import BasePipelineWrapper
from dualserve.core import routes
from dualserve.core.jsonify import flask_json
from dualserve.frontends import fastapi as fastapi_adapter
from dualserve.frontends import flask as flask_adapter
from dualserve.frontends.asgi_in_wsgi import ASGIMount
from dualserve.frontends.wsgi_in_asgi import WSGIMount
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, VOLATILE

DOCUMENT: dict[str, Any] = {
    "zeta": [1, 2.5, None, "Grüße"],
    "alpha": {"b": True, "a": "é → ∞"},
    "when": datetime.date(2024, 1, 2),
    "at": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "amount": decimal.Decimal("1.10"),
}


class ItemWrapper(BasePipelineWrapper):
    def run_api(self, name: int, extra: str = "x") -> dict[str, Any]:
        return {"name": name, "extra": extra}


class DocumentWrapper(BasePipelineWrapper):
    def run_api(self) -> dict[str, Any]:
        return DOCUMENT


class HealthWrapper(BasePipelineWrapper):
    def run_api(self) -> dict[str, bool]:
        return {"ok": True}


def _add_routes(app: fastapi_adapter.DualserveFastAPI | flask_adapter.DualserveFlask) -> None:
    app.add_pipeline_route("/items/{name}", "item")  # the pipeline's own methods: GET, HEAD, POST
    app.add_pipeline_route("/legacy/{name}", "item", methods=("GET",))
    app.add_pipeline_route("/document", "document", methods=["get"], json="flask")
    app.add_pipeline_route("/health", "health", methods=("GET",), json="flask")
    app.add_pipeline_route("/health/plain", "health")


@pytest.fixture(scope="module")
def service() -> Service:
    wrappers = {"item": ItemWrapper(), "document": DocumentWrapper(), "health": HealthWrapper()}
    return Service(Registry.from_wrappers(wrappers))


def _fastapi(service: Service) -> fastapi_adapter.DualserveFastAPI:
    app = fastapi_adapter.create_app(service)
    _add_routes(app)
    return app


def _flask(service: Service) -> flask_adapter.DualserveFlask:
    app = flask_adapter.create_app(service)
    _add_routes(app)
    return app


def _client(name: str, service: Service) -> httpx2.Client:
    """As tests/conftest.py's ``frontend_client``, with the pipeline routes on the app that serves them."""
    if name == "fastapi":
        return TestClient(_fastapi(service))
    if name == "flask":
        app = wsgiref.validate.validator(_flask(service))
        return httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://testserver")
    if name == "flask-in-fastapi":  # as compose_asgi
        outer = fastapi_adapter.create_app(service)
        inner = WSGIMount(_flask(service), threads=service.threads, max_body_size=service.max_body_size)
        outer.mount_direct(routes.FLASK_PREFIX, inner)
        return TestClient(outer, base_url=f"http://testserver{routes.FLASK_PREFIX}")
    if name == "fastapi-in-flask":  # as compose_wsgi
        outer_flask = flask_adapter.create_app(service)
        mounted = ASGIMount(_fastapi(service), max_body_size=service.max_body_size)
        outer_flask.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
            outer_flask.wsgi_app, {routes.FASTAPI_PREFIX: mounted}
        )
        transport = httpx2.WSGITransport(app=outer_flask)
        return httpx2.Client(transport=transport, base_url=f"http://testserver{routes.FASTAPI_PREFIX}")
    raise ValueError(name)


@pytest.fixture(params=FRONTENDS)
def client(request: pytest.FixtureRequest, service: Service) -> Iterator[httpx2.Client]:
    with _client(request.param, service) as client:
        yield client


def _jsonify(value: Any) -> flask.Response:
    """What Flask itself sends for ``jsonify(value)``, out of debug mode."""
    app = flask.Flask("legacy")
    with app.app_context():
        return flask.jsonify(value)


# --- path parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_a_bad_path_value_is_a_422_located_in_the_path(client: httpx2.Client, method: str) -> None:
    response = client.request(method, "/items/abc", json={} if method == "POST" else None)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert response.json() == {
            "detail": [
                {
                    "loc": ["path", "name"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                }
            ]
        }


def test_other_arguments_keep_their_own_location(client: httpx2.Client) -> None:
    response = client.post("/items/abc", json={"extra": 5})
    locations = [problem["loc"] for problem in response.json()["detail"]]
    assert locations == [["path", "name"], ["body", "extra"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/items/5", None, {"name": 5, "extra": "x"}),
        ("GET", "/items/5?extra=y&name=7", None, {"name": 5, "extra": "y"}),  # the path's value wins
        ("POST", "/items/5", {"extra": "y", "name": 7}, {"name": 5, "extra": "y"}),
        ("POST", "/items/5", None, {"name": 5, "extra": "x"}),
    ],
)
def test_path_values_become_arguments(
    client: httpx2.Client, method: str, path: str, body: Any, expected: dict[str, Any]
) -> None:
    response = client.request(method, path, json=body)
    assert (response.status_code, response.json()) == (200, expected)


def test_a_body_that_is_not_an_object_is_the_usual_422(client: httpx2.Client) -> None:
    response = client.post("/items/5", content=b"[1]", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


# --- a legacy route's methods --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_get_route_answers_other_methods_with_405_and_allow(client: httpx2.Client, method: str) -> None:
    response = client.request(method, "/legacy/5")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json() == {"detail": "Method Not Allowed"}


def test_head_follows_get_on_a_get_route(client: httpx2.Client) -> None:
    get, head = client.get("/legacy/5"), client.head("/legacy/5")
    assert (get.status_code, head.status_code, head.content) == (200, 200, b"")
    assert head.headers["content-length"] == get.headers["content-length"]


def test_without_methods_a_pipeline_route_takes_the_pipelines_own(client: httpx2.Client) -> None:
    assert client.post("/items/5").status_code == 200
    response = client.put("/items/5")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD, POST")


@pytest.mark.parametrize(
    ("methods", "error"),
    [(("PUT",), ValueError), ((), ValueError), ("GET", TypeError)],
)
def test_methods_a_pipeline_cannot_answer_are_refused(methods: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        routes.pipeline_route("/x", "item", methods)


def test_methods_are_normalised() -> None:
    assert routes.pipeline_route("/x", "item", ["post", "get"]).methods == ("GET", "HEAD", "POST")
    assert routes.pipeline_route("/x", "item").methods is None
    with pytest.raises(ValueError, match="json"):
        routes.pipeline_route("/x", "item", json="django")  # type: ignore[arg-type]


# --- JSON as Flask's jsonify ---------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value"), [("/health", {"ok": True}), ("/document", DOCUMENT)])
def test_json_flask_is_byte_identical_to_jsonify(client: httpx2.Client, path: str, value: Any) -> None:
    expected = _jsonify(value)
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == expected.get_data()
    assert response.headers["content-type"] == expected.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == expected.headers["content-length"]
    head = client.head(path)
    assert (head.content, head.headers["content-length"]) == (b"", expected.headers["content-length"])


def test_without_json_flask_the_contract_json_is_kept(client: httpx2.Client) -> None:
    assert client.get("/health/plain").content == b'{"ok":true}'


def test_every_frontend_answers_alike(service: Service) -> None:
    requests = [
        ("GET", "/items/abc"),
        ("POST", "/legacy/5"),
        ("HEAD", "/legacy/5"),
        ("GET", "/document"),
        ("GET", "/health"),
    ]
    answers: dict[str, list[Any]] = {}
    for name in FRONTENDS:
        with _client(name, service) as client:
            for method, path in requests:
                response = client.request(method, path)
                headers = sorted((key, value) for key, value in response.headers.items() if key not in VOLATILE)
                answers.setdefault(name, []).append((response.status_code, headers, response.content))
    reference = answers.pop("fastapi")
    for name, answer in answers.items():
        assert answer == reference, name


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.0, 1e20, -0.5, 10**30]},
        "Grüße",
        None,
        [datetime.datetime(2024, 5, 6, 7, 8, 9), {"nested": {"y": 1, "x": 2}}],
        float("nan"),
    ],
)
def test_flask_json_matches_jsonify(value: Any) -> None:
    assert flask_json(value) == _jsonify(value).get_data()


def test_flask_json_falls_back_for_what_flask_cannot_encode() -> None:
    assert flask_json({3, 1}, b"[3,1]") == b"[3,1]\n"
    with pytest.raises(TypeError):
        flask_json({1})
