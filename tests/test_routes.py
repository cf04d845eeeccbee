"""The core's route table: one entry serves a path on every frontend; pipeline routes on both."""

from __future__ import annotations

import httpx2
import pytest
from starlette.testclient import TestClient

from dualserve import Registry, fastapi_app, flask_app
from dualserve.core import routes
from dualserve.serving.pipelines import RESERVED_NAMES
from tests.wrappers import PathWrapper


@pytest.mark.parametrize(
    ("path", "endpoint", "arguments"),
    [
        ("/status", "status", {}),
        ("/openapi.json", "openapi", {}),
        ("/docs", "page", {"page": "docs"}),
        ("/ui/ui.js", "page", {"page": "ui", "filename": "ui.js"}),
        ("/card/run", "run", {"pipeline": "card"}),
        ("/card/run/", None, None),
        ("/a/b/run", None, None),
        ("//run", None, None),
        ("/status/", None, None),
    ],
)
def test_match(path: str, endpoint: str | None, arguments: dict[str, str] | None) -> None:
    found = routes.match(path)
    answer = (found[0].endpoint, found[1]) if found else (None, None)
    assert answer == (endpoint, arguments)


def test_reserved_names_come_from_the_table_and_the_mounts() -> None:
    expected = {"favicon.ico", "status", "metrics", "openapi.json", "docs", "ui", "jobs", "flask", "fastapi"}
    assert RESERVED_NAMES == routes.RESERVED_NAMES == expected


def test_a_pipeline_route_cannot_take_the_pipeline_parameter() -> None:
    with pytest.raises(ValueError, match="pipeline"):
        routes.pipeline_route("/x/{pipeline}", "card")


def test_the_root_leads_a_person_to_the_playground(client: httpx2.Client) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "ui"
    assert response.json() == {"detail": "The playground is at ui; the API's documentation at docs."}
    assert client.get("/", follow_redirects=True).headers["content-type"].startswith("text/html")
    assert client.post("/").status_code == 405


def test_the_favicon_browsers_ask_for_is_there(client: httpx2.Client) -> None:
    response = client.get("/favicon.ico")
    assert (response.status_code, response.headers["content-type"]) == (200, "image/png")


def _clients() -> dict[str, httpx2.Client]:
    registry = Registry.from_wrappers({"path": PathWrapper()})
    fastapi = fastapi_app(registry)
    fastapi.add_pipeline_route("/files/{name}", "path")
    flask = flask_app(registry)
    flask.add_pipeline_route("/files/{name}", "path")
    return {
        "fastapi": TestClient(fastapi),
        "flask": httpx2.Client(transport=httpx2.WSGITransport(app=flask), base_url="http://testserver"),
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/files/notes.txt", 200),
        ("HEAD", "/files/notes.txt", 200),
        ("GET", "/files/other.txt", 422),
        ("PUT", "/files/notes.txt", 405),
        ("GET", "/path/run?name=notes.txt", 200),  # the pipeline's own route still serves it
    ],
)
def test_add_pipeline_route_serves_a_legacy_path_alike_on_both_frontends(method: str, path: str, status: int) -> None:
    answers = {}
    for name, client in _clients().items():
        with client:
            response = client.request(method, path)
            headers = {
                key: value
                for key, value in response.headers.items()
                if key not in ("date", "last-modified", "x-request-id")
            }
            answers[name] = (response.status_code, headers, response.content)
    assert answers["fastapi"] == answers["flask"]
    assert answers["flask"][0] == status
    if status == 422:
        assert answers["flask"][2].startswith(b'{"detail":[{"loc":["path","name"]')
