"""The edge (docs/contract.md section 8) on every frontend, with one set of assertions: CORS,
API keys, rate limits, X-Request-ID, ``/metrics`` and spans to the last byte.

Each test builds its own service (a rate limit counts per service) and sends the same requests to
every frontend; answers that must be alike are compared byte for byte, X-Request-ID aside.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from dualserve import BasePipelineWrapper, produces
from dualserve.serving import tracing
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, VOLATILE, frontend_client

ORIGIN = "https://app.example"
KEYS = ("first-key", "second-key")


class Picture(BasePipelineWrapper):
    def run_api(self, width: int = 8) -> Image.Image:
        return Image.new("RGB", (width, 8), "teal")


class Slow(BasePipelineWrapper):
    """A stream whose last byte comes a while after its answer is made."""

    @produces("application/octet-stream")
    def run_api(self, pause: float = 0.3) -> Iterator[bytes]:
        yield b"first"
        time.sleep(pause)
        yield b"last"


def make_service(**edge: Any) -> Service:
    return Service(Registry.from_wrappers({"picture": Picture(), "slow": Slow()}), **edge)


def alike(response: httpx2.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((key, value) for key, value in response.headers.items() if key not in VOLATILE)
    return response.status_code, headers, response.content


def each_frontend(service: Service, send: Any) -> list[httpx2.Response]:
    answers = []
    for name in FRONTENDS:
        with frontend_client(name, service) as client:
            answers.append(send(client))
    return answers


def assert_alike(answers: list[httpx2.Response]) -> httpx2.Response:
    first = alike(answers[0])
    for answer in answers[1:]:
        assert alike(answer) == first
    return answers[0]


# --- CORS -------------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_alike() -> None:
    service = make_service(cors_origins=[ORIGIN], api_keys=list(KEYS))
    headers = {"origin": ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "x-api-key"}
    answer = assert_alike(each_frontend(service, lambda client: client.options("/picture/run", headers=headers)))
    assert answer.status_code == 204  # no key asked: a browser sends none with a preflight
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "x-api-key", "idempotency-key", "range", "content-type"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in answer.headers


def test_a_foreign_origin_gets_no_cors_header() -> None:
    service = make_service(cors_origins=[ORIGIN])
    headers = {"origin": "https://evil.example", "access-control-request-method": "GET"}
    preflight = assert_alike(each_frontend(service, lambda client: client.options("/picture/run", headers=headers)))
    assert preflight.status_code == 403 and preflight.headers["content-type"] == "application/json"
    plain = assert_alike(
        each_frontend(service, lambda client: client.get("/picture/run", headers={"origin": "https://evil.example"}))
    )
    assert plain.status_code == 200
    assert not any(name.startswith("access-control-") for name in plain.headers)


def test_answers_to_an_allowed_origin_expose_the_media_headers() -> None:
    service = make_service(cors_origins=[ORIGIN])
    answer = assert_alike(each_frontend(service, lambda client: client.get("/picture/run", headers={"origin": ORIGIN})))
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {name.strip().lower() for name in answer.headers["access-control-expose-headers"].split(",")}
    wanted = {"content-disposition", "content-length", "content-range", "accept-ranges", "etag", "location"}
    assert wanted | {"retry-after", "x-request-id"} <= exposed
    # One Vary, holding both what the core varies on and the origin.
    assert {part.strip() for part in answer.headers["vary"].split(",")} == {"Accept", "Origin"}


def test_any_origin_is_star_and_never_with_credentials() -> None:
    service = make_service(cors_origins=["*"])
    answer = assert_alike(each_frontend(service, lambda client: client.get("/picture/run", headers={"origin": ORIGIN})))
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


# --- API keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer nope"}, 401),
        ({"x-api-key": "first-key-but-longer"}, 401),
        ({"authorization": "Bearer first-key"}, 200),
        ({"authorization": "bearer second-key"}, 200),
        ({"x-api-key": "second-key"}, 200),
    ],
)
def test_pipeline_routes_need_a_key(headers: dict[str, str], status: int) -> None:
    service = make_service(api_keys=list(KEYS))
    answer = assert_alike(each_frontend(service, lambda client: client.get("/picture/run", headers=headers)))
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
        assert set(answer.json()) == {"detail"}
        assert "first-key" not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/status", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/docs", 200),
        ("GET", "/ui", 200),
        ("GET", "/metrics", 401),
        ("POST", "/picture/jobs", 401),
        ("GET", "/jobs/some-job", 401),
        ("DELETE", "/jobs/some-job", 401),
        ("GET", "/jobs/some-job/result", 401),
    ],
)
def test_only_the_status_and_documents_stay_open(method: str, path: str, status: int) -> None:
    service = make_service(api_keys=list(KEYS))
    answers = each_frontend(service, lambda client: client.request(method, path))
    assert [answer.status_code for answer in answers] == [status] * len(FRONTENDS)


def test_the_openapi_document_declares_both_key_schemes() -> None:
    document = frontend_client("fastapi", make_service(api_keys=list(KEYS))).get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    run = document["paths"]["/picture/run"]["get"]
    assert run["security"] == [{"bearer": []}, {"apiKey": []}] and "401" in run["responses"]
    assert "security" not in document["paths"]["/status"]["get"]
    open_document = frontend_client("fastapi", make_service()).get("/openapi.json").json()
    assert "securitySchemes" not in open_document["components"]


# --- Rate limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FRONTENDS)
def test_past_the_rate_a_key_gets_429_with_retry_after(name: str) -> None:
    # Per hour: a test that straddled a window's edge would see the sliding window's estimate.
    service = make_service(api_keys=list(KEYS), rate_limit="3/hour")
    with frontend_client(name, service) as client:
        first = {"x-api-key": KEYS[0]}
        assert [client.get("/picture/run", headers=first).status_code for _ in range(3)] == [200] * 3
        refused = client.get("/picture/run", headers=first)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert refused.json()["detail"].startswith("Rate limit of 3 per 1 hour exceeded")
        # Another key has a budget of its own; the documents are never counted.
        assert client.get("/picture/run", headers={"x-api-key": KEYS[1]}).status_code == 200
        assert client.get("/status").status_code == 200


@pytest.mark.parametrize("name", FRONTENDS)
def test_without_keys_the_rate_is_per_client_address(name: str) -> None:
    service = make_service(rate_limit="2/hour")
    with frontend_client(name, service) as client:
        assert [client.get("/picture/run").status_code for _ in range(3)] == [200, 200, 429]
        other = client.get("/picture/run", headers={"x-forwarded-for": "10.0.0.9"})
        assert other.status_code == 429  # the address the server saw, never one a client claims


# --- Request ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FRONTENDS)
def test_a_request_id_is_echoed_or_made(name: str, caplog: pytest.LogCaptureFixture) -> None:
    with (
        frontend_client(name, make_service(api_keys=list(KEYS))) as client,
        caplog.at_level("INFO", "dualserve.access"),
    ):
        assert client.get("/status", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
        made = client.get("/picture/run").headers["x-request-id"]  # a 401: every answer has one
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        injected = client.get("/status", headers={"x-request-id": "a b\tc"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", injected)
    lines = [record.getMessage() for record in caplog.records if record.name == "dualserve.access"]
    assert any(line.endswith(" abc-123") and '"GET ' in line and " 200 " in line for line in lines)
    assert any(line.endswith(made) and " 401 " in line for line in lines)


# --- Metrics and spans ------------------------------------------------------------------------------


def scrape(client: httpx2.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


@pytest.mark.parametrize("name", FRONTENDS)
def test_metrics_count_requests_to_their_last_byte(name: str) -> None:
    service = make_service()
    labels = frozenset({("pipeline", "slow"), ("route", "run")})
    with frontend_client(name, service) as client:
        before = scrape(client)
        assert client.get("/slow/run", params={"pause": 0.3}).content == b"firstlast"
        assert client.get("/picture/run", params={"width": "x"}).status_code == 422
        after = scrape(client)

    def delta(metric: str, extra: frozenset[tuple[str, str]] = frozenset()) -> float:
        key = (metric, labels | extra if metric != "dualserve_requests_total" else extra)
        return after.get(key, 0.0) - before.get(key, 0.0)

    ok = frozenset({("pipeline", "slow"), ("route", "run"), ("method", "GET"), ("status", "200")})
    bad = frozenset({("pipeline", "picture"), ("route", "run"), ("method", "GET"), ("status", "422")})
    assert delta("dualserve_requests_total", ok) == 1
    assert delta("dualserve_requests_total", bad) == 1
    assert delta("dualserve_request_duration_seconds_count") == 1
    assert delta("dualserve_request_duration_seconds_sum") >= 0.3  # the pause before the last chunk
    assert delta("dualserve_response_bytes_total") == len(b"firstlast")
    assert ("dualserve_jobs", frozenset({("status", "queued")})) in after


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


@pytest.mark.parametrize("name", FRONTENDS)
def test_a_span_lasts_to_the_last_byte(name: str, spans: InMemorySpanExporter) -> None:
    with frontend_client(name, make_service()) as client:
        response = client.get(
            "/slow/run",
            params={"pause": 0.2},
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-request-id": "r-1"},
        )
        assert response.content == b"firstlast"
    (span,) = spans.get_finished_spans()
    assert span.name == "GET /{pipeline}/run"
    assert span.attributes is not None
    assert span.attributes["dualserve.pipeline"] == "slow" and span.attributes["dualserve.request_id"] == "r-1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.parent is not None and f"{span.parent.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.2
