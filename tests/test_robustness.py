"""Regressions from review: one loop for async code, bad headers, HEAD errors, odd methods and paths."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from dualserve import BasePipelineWrapper, Media, Registry
from tests.conftest import assert_alike
from tests.wrappers import HEAD_CLOSES

FAILED = {"detail": "Pipeline execution failed"}


def test_async_setup_run_api_and_generators_share_one_loop(client: httpx2.Client) -> None:
    for _ in range(3):
        assert client.get("loop_bound/run").json() == {"same_loop": True}
        assert client.get("loop_bound_stream/run").content == b"same"


@pytest.mark.parametrize("kind", ["snowman", "number", "detail"])
def test_unsendable_headers_and_details_are_json_500(client: httpx2.Client, kind: str) -> None:
    response = client.get("bad_header/run", params={"kind": kind})
    assert (response.status_code, response.json()) == (500, FAILED)


def test_http_error_headers_are_sent(client: httpx2.Client) -> None:
    response = client.get("bad_header/run", params={"kind": "error-header"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "5")


def test_bad_first_chunk_is_json_500(client: httpx2.Client) -> None:
    response = client.get("bad_first_chunk/run")
    assert (response.status_code, response.json()) == (500, FAILED)


@pytest.mark.parametrize("url", ["nope/run", "failing/run", "image/run", "no/such/route"])
def test_head_errors_have_no_body(client: httpx2.Client, url: str) -> None:
    get = client.get(url)
    head = client.head(url)
    assert head.status_code == get.status_code >= 400
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


def test_head_closes_a_sync_stream_off_the_event_loop(client: httpx2.Client) -> None:
    HEAD_CLOSES.clear()
    assert client.head("head_stream/run").status_code == 200
    assert HEAD_CLOSES == [False]


@pytest.mark.parametrize(
    ("method", "url", "status", "allow"),
    [
        ("PROPFIND", "image/run", 405, "GET, HEAD, POST"),
        ("PROPFIND", "nope/run", 404, None),
        ("TRACE", "status", 405, "GET, HEAD"),
        ("OPTIONS", "image/run", 405, "GET, HEAD, POST"),
    ],
)
def test_any_method_reaches_the_core(client: httpx2.Client, method: str, url: str, status: int, allow: str) -> None:
    response = client.request(method, url)
    assert response.status_code == status
    assert response.headers.get("allow") == allow


@pytest.mark.parametrize("url", ["image//run", "status//", "image/run/"])
def test_odd_slashes_are_json_404(client: httpx2.Client, url: str) -> None:
    response = client.get(url)
    assert (response.status_code, response.headers["content-type"]) == (404, "application/json")


@pytest.mark.parametrize("query", ["question=%FF", "question=%C3%A9t%C3%A9", "question=a+b%2Bc", "question"])
def test_query_strings_decode_alike(clients: dict[str, httpx2.Client], query: str) -> None:
    answers = {}
    for name, client in clients.items():
        response = client.get(f"hayhooks_async/run?{query}")
        answers[name] = (response.status_code, response.content)
    assert len(set(answers.values())) == 1, answers


def test_wrapper_without_source_file_loads() -> None:
    namespace: dict[str, Any] = {"BasePipelineWrapper": BasePipelineWrapper}
    source = "class Fine(BasePipelineWrapper):\n    def setup(self): pass\n    def run_api(self) -> int: return 1\n"
    exec(source, namespace)  # a class defined the way a notebook or `python -c` defines it
    registry = Registry.from_wrappers({"fine": namespace["Fine"]()})
    assert list(registry.pipelines) == ["fine"]


@pytest.mark.parametrize("status", [204, 205, 304])
def test_media_refuses_statuses_without_a_body(status: int) -> None:
    with pytest.raises(ValueError, match="allow a body"):
        Media(b"x", status_code=status)


@pytest.mark.parametrize(
    ("method", "url"), [("HEAD", "nope/run"), ("PROPFIND", "image/run"), ("GET", "bad_header/run?kind=snowman")]
)
def test_every_frontend_answers_the_regressions_alike(clients: dict[str, httpx2.Client], method: str, url: str) -> None:
    assert_alike(clients, lambda c: c.request(method, url))


def test_routes_work_through_user_middleware_too() -> None:
    # With middleware added, the fast path steps aside and FastAPI's router serves the routes.
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.testclient import TestClient

    from dualserve import fastapi_app
    from tests.wrappers import make_wrappers

    app = fastapi_app(make_wrappers())
    seen: list[str] = []

    async def record(request: Any, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=record)
    with TestClient(app) as client:
        assert client.get("/image/run", params={"prompt": "x"}).headers["content-type"] == "image/png"
        assert client.request("PROPFIND", "/image/run").headers["allow"] == "GET, HEAD, POST"
        assert client.get("/status").json()["status"] == "ok"
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
    assert seen == ["/image/run", "/image/run", "/status", "/openapi.json", "/docs"]
