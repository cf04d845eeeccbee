"""The metrics ``GET /metrics`` answers and the request spans, module by module (the routes that
use them are tested with the frontends).

Metrics: the process's counters are shared by every test of the session, so the in-process tests
compare before and after. Multiprocess mode is a property of a process, so its tests run child
Pythons (the `server` tier). Tracing: an in-memory exporter on a provider given through
``use_tracer_provider``, since OpenTelemetry lets a process set its global provider only once;
the global provider's path runs in a child.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from dualserve.serving import metrics, tracing

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: bytes) -> Samples:
    """Every sample of an exposition, by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def families(text: bytes) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text.decode())}


# --- metrics, in this process -------------------------------------------------------------------


def test_observe_request_counts_a_request_its_seconds_and_bytes() -> None:
    before = samples(metrics.render(None)[0])
    metrics.observe_request("metrics_test", "run", "GET", 200, 0.3, 1234)
    metrics.observe_request("metrics_test", "run", "GET", 200, 0.02, 6)
    metrics.observe_request("metrics_test", "run", "POST", 422, 0.001, 50)
    after = samples(metrics.render(None)[0])

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    run = {"pipeline": "metrics_test", "route": "run"}
    assert delta("dualserve_requests_total", **run, method="GET", status="200") == 2
    assert delta("dualserve_requests_total", **run, method="POST", status="422") == 1
    assert delta("dualserve_request_duration_seconds_count", **run) == 3
    assert delta("dualserve_request_duration_seconds_sum", **run) == pytest.approx(0.321)
    assert delta("dualserve_request_duration_seconds_bucket", **run, le="0.005") == 1
    assert delta("dualserve_request_duration_seconds_bucket", **run, le="0.025") == 2
    assert delta("dualserve_request_duration_seconds_bucket", **run, le="0.25") == 2
    assert delta("dualserve_request_duration_seconds_bucket", **run, le="0.5") == 3
    assert delta("dualserve_request_duration_seconds_bucket", **run, le="+Inf") == 3
    assert delta("dualserve_response_bytes_total", **run) == 1290


def test_the_buckets_reach_from_milliseconds_to_minutes() -> None:
    metrics.observe_request("metrics_test", "page", "GET", 200, 0.1, 0)
    found = samples(metrics.render(None)[0])
    bounds = {
        dict(labels)["le"]
        for name, labels in found
        if name == "dualserve_request_duration_seconds_bucket" and dict(labels)["route"] == "page"
    }
    assert bounds == {str(bound) for bound in metrics.BUCKETS} | {"+Inf"}
    assert {"0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "60.0", "300.0"} <= bounds


@pytest.mark.parametrize(
    ("method", "label"),
    [
        pytest.param("GET", "GET", id="get"),
        pytest.param("HEAD", "HEAD", id="head"),
        pytest.param("OPTIONS", "OPTIONS", id="options"),
        pytest.param("PROPFIND", "_OTHER", id="webdav"),
        pytest.param("get", "_OTHER", id="lowercase"),
        pytest.param("X" * 100, "_OTHER", id="invented"),
    ],
)
def test_a_method_label_is_one_of_http_s(method: str, label: str) -> None:
    assert metrics.bounded_method(method) == label


def test_an_invented_method_makes_no_series_of_its_own() -> None:
    before = samples(metrics.render(None)[0])
    metrics.observe_request("", "home", "BREW", 405, 0.0, 0)
    after = samples(metrics.render(None)[0])
    labels = {"pipeline": "", "route": "home", "method": "_OTHER", "status": "405"}
    assert value(after, "dualserve_requests_total", **labels) - value(before, "dualserve_requests_total", **labels) == 1
    assert not any(dict(labels).get("method") == "BREW" for _, labels in after)


def test_count_cache_counts_by_outcome() -> None:
    before = samples(metrics.render(None)[0])
    for outcome in ("hit", "hit", "miss", "coalesced"):
        metrics.count_cache("metrics_test", outcome)
    after = samples(metrics.render(None)[0])
    for outcome, expected in (("hit", 2), ("miss", 1), ("coalesced", 1)):
        labels = {"pipeline": "metrics_test", "outcome": outcome}
        name = "dualserve_cache_requests_total"
        assert value(after, name, **labels) - value(before, name, **labels) == expected


def test_the_families_are_named_before_the_first_request() -> None:
    body, media_type = metrics.render(None)
    assert media_type.startswith("text/plain")
    assert {
        "dualserve_requests",
        "dualserve_request_duration_seconds",
        "dualserve_response_bytes",
        "dualserve_cache_requests",
    } <= families(body)


def test_the_job_gauges_are_read_at_each_scrape() -> None:
    counts = {"queued": 3, "running": 1}
    read: list[int] = []

    def job_counts() -> dict[str, int]:
        read.append(1)
        return counts

    first = samples(metrics.render(job_counts)[0])
    assert {status: value(first, "dualserve_jobs", status=status) for status in metrics.JOB_STATUSES} == {
        "queued": 3,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
    }
    assert value(first, "dualserve_job_queue_depth") == 3
    counts = {"queued": 0, "succeeded": 4}
    second = samples(metrics.render(job_counts)[0])
    assert value(second, "dualserve_job_queue_depth") == 0
    assert value(second, "dualserve_jobs", status="succeeded") == 4
    assert read == [1, 1]


def test_without_jobs_there_are_no_job_gauges() -> None:
    assert not {"dualserve_jobs", "dualserve_job_queue_depth"} & families(metrics.render(None)[0])


def test_a_failing_job_count_leaves_the_job_gauges_out(caplog: pytest.LogCaptureFixture) -> None:
    def job_counts() -> dict[str, int]:
        raise OSError("the job records are out of reach")

    metrics.observe_request("metrics_test", "status", "GET", 200, 0.001, 2)
    with caplog.at_level(logging.WARNING, logger="dualserve"):
        body, _ = metrics.render(job_counts)
    assert "dualserve_requests" in families(body)
    assert not {"dualserve_jobs", "dualserve_job_queue_depth"} & families(body)
    assert "job counts could not be read" in caplog.text


def test_child_exit_in_one_process_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.child_exit(os.getpid())


# --- prepare_multiprocess -------------------------------------------------------------------------


@pytest.fixture
def at_exit(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Callable[..., object], tuple[object, ...]]]:
    """What prepare_multiprocess registers to run at exit, kept here instead of run at this process's."""
    registered: list[tuple[Callable[..., object], tuple[object, ...]]] = []
    recorder = types.SimpleNamespace(register=lambda function, *args: registered.append((function, args)))
    monkeypatch.setattr(metrics, "atexit", recorder)  # this module's atexit only: pytest registers too
    # Set, then deleted: monkeypatch then takes back what prepare_multiprocess sets in the test (a
    # folder left named in the environment would make every later test's process multiprocess).
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    return registered


def test_prepare_makes_a_folder_for_several_workers(at_exit: list[tuple[Callable[..., object], tuple[object, ...]]]):
    metrics.prepare_multiprocess(4)
    path = Path(os.environ[metrics.MULTIPROC_ENV])
    assert path.is_dir() and path.name.startswith("dualserve-metrics-")
    [(remove, args)] = at_exit
    # A fork of this process (a gunicorn worker) exiting leaves the folder; this process removes it.
    remove(args[0], os.getpid() + 1)
    assert path.is_dir()
    remove(*args)
    assert not path.exists()


def test_prepare_leaves_one_worker_in_one_process(at_exit: list[tuple[Callable[..., object], tuple[object, ...]]]):
    metrics.prepare_multiprocess(1)
    assert metrics.MULTIPROC_ENV not in os.environ
    assert at_exit == []


def test_prepare_empties_the_user_s_folder(
    at_exit: list[tuple[Callable[..., object], tuple[object, ...]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("counter_11.db", "histogram_11.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics.prepare_multiprocess(4)
    assert os.environ[metrics.MULTIPROC_ENV] == str(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert at_exit == []  # the user's folder is the user's to remove


def test_prepare_makes_the_user_s_folder_if_missing(
    at_exit: list[tuple[Callable[..., object], tuple[object, ...]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "metrics"))
    metrics.prepare_multiprocess(2)
    assert (tmp_path / "metrics").is_dir()


# --- metrics, several processes -------------------------------------------------------------------


def run_python(script: str, env: dict[str, str]) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


WORKER = """
    import os
    {before}
    from dualserve.serving import metrics
    for _ in range({requests}):
        metrics.observe_request("multi", "run", "GET", 200, 0.2, 100)
    metrics.count_cache("multi", "hit")
    print(os.getpid())
"""


def test_several_processes_are_summed(tmp_path: Path) -> None:
    env = {metrics.MULTIPROC_ENV: str(tmp_path)}
    first = int(run_python(WORKER.format(before="", requests=3), env))
    # prometheus_client imported before the folder is named (a library did it, say): the metrics,
    # made later, still count in the files.
    late = f"import prometheus_client\n    os.environ[{metrics.MULTIPROC_ENV!r}] = {str(tmp_path)!r}"
    run_python(WORKER.format(before=late, requests=2), {})
    scrape = f"""
        from dualserve.serving import metrics
        metrics.child_exit({first})  # gunicorn's hook, once the first worker has exited
        body, media_type = metrics.render(lambda: {{"queued": 4, "running": 1}})
        print(body.decode())
    """
    found = samples(run_python(scrape, env).encode())
    run = {"pipeline": "multi", "route": "run"}
    assert value(found, "dualserve_requests_total", **run, method="GET", status="200") == 5
    assert value(found, "dualserve_request_duration_seconds_count", **run) == 5
    assert value(found, "dualserve_request_duration_seconds_bucket", **run, le="0.25") == 5
    assert value(found, "dualserve_request_duration_seconds_sum", **run) == pytest.approx(1.0)
    assert value(found, "dualserve_response_bytes_total", **run) == 500
    assert value(found, "dualserve_cache_requests_total", pipeline="multi", outcome="hit") == 2
    # Read once from the records, not once per process.
    assert value(found, "dualserve_jobs", status="queued") == 4
    assert value(found, "dualserve_job_queue_depth") == 4


def test_the_folder_outlives_a_fork_and_not_its_maker() -> None:
    script = """
        import os, sys
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        from dualserve.serving import metrics
        metrics.prepare_multiprocess(2)
        path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a gunicorn worker exits this way: the atexit handlers it inherited run
        os.waitpid(child, 0)
        assert os.path.isdir(path), "a fork removed the folder"
        print(path)
    """
    path = Path(run_python(script, {}).strip())
    assert path.name.startswith("dualserve-metrics-")
    assert not path.exists()


# --- tracing ------------------------------------------------------------------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_tracer_provider(provider)
    try:
        yield spans
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def headers(**values: str) -> Callable[[str], str | None]:
    return {name.lower(): value for name, value in values.items()}.get


def test_a_request_is_one_server_span(exporter: InMemorySpanExporter) -> None:
    span = tracing.start_span("GET", "/{pipeline}/run", "draw", "abc123", headers(), 1_000, path="/draw/run")
    assert span is not None
    assert exporter.get_finished_spans() == ()
    tracing.end_span(span, 200, 4096)
    [finished] = exporter.get_finished_spans()
    assert finished.name == "GET /{pipeline}/run"
    assert finished.kind is SpanKind.SERVER
    assert finished.start_time == 1_000
    assert finished.parent is None
    assert finished.status.status_code is StatusCode.UNSET
    assert dict(finished.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/{pipeline}/run",
        "url.path": "/draw/run",
        "dualserve.pipeline": "draw",
        "dualserve.request_id": "abc123",
        "http.response.status_code": 200,
        "http.response.body.size": 4096,
    }
    assert finished.instrumentation_scope is not None and finished.instrumentation_scope.name == "dualserve"


def test_a_route_of_no_pipeline_has_no_pipeline_attribute(exporter: InMemorySpanExporter) -> None:
    tracing.end_span(tracing.start_span("GET", "/status", "", "r1", headers()), 200, 2)
    [finished] = exporter.get_finished_spans()
    assert "dualserve.pipeline" not in (finished.attributes or {})
    assert "url.path" not in (finished.attributes or {})


def test_the_span_follows_the_traceparent_header(exporter: InMemorySpanExporter) -> None:
    given = headers(Traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    tracing.end_span(tracing.start_span("POST", "/{pipeline}/run", "draw", "r2", given), 200, 0)
    [finished] = exporter.get_finished_spans()
    assert finished.parent is not None and finished.parent.is_remote
    assert finished.parent.span_id == int(PARENT_ID, 16)
    assert finished.context is not None and finished.context.trace_id == int(TRACE_ID, 16)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        pytest.param(200, StatusCode.UNSET, id="ok"),
        pytest.param(404, StatusCode.UNSET, id="client-error"),
        pytest.param(500, StatusCode.ERROR, id="server-error"),
        pytest.param(503, StatusCode.ERROR, id="unavailable"),
    ],
)
def test_a_server_error_marks_the_span(exporter: InMemorySpanExporter, status: int, code: StatusCode) -> None:
    tracing.end_span(tracing.start_span("GET", "/{pipeline}/run", "draw", "r3", headers()), status, 10)
    [finished] = exporter.get_finished_spans()
    assert finished.status.status_code is code
    assert (finished.attributes or {}).get("error.type") == (str(status) if status >= 500 else None)


def test_an_invented_method_is_other(exporter: InMemorySpanExporter) -> None:
    tracing.end_span(tracing.start_span("BREW", "/", "", "r4", headers()), 405, 0)
    [finished] = exporter.get_finished_spans()
    assert finished.name == "HTTP /"
    assert (finished.attributes or {})["http.request.method"] == "_OTHER"
    assert (finished.attributes or {})["http.request.method_original"] == "BREW"


def test_end_span_of_none_does_nothing() -> None:
    tracing.end_span(None, 500, 0)


def test_without_a_provider_there_is_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    def unread(*args: object, **kwargs: object) -> None:
        raise AssertionError("the headers were read with tracing off")

    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    monkeypatch.setattr(propagate, "extract", unread)
    assert tracing.start_span("GET", "/status", "", "r5", headers()) is None
    tracing.use_tracer_provider(trace.NoOpTracerProvider())
    try:
        assert tracing.start_span("GET", "/status", "", "r6", headers()) is None
    finally:
        tracing.use_tracer_provider(None)


def test_without_opentelemetry_there_is_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "opentelemetry" or name.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(tracing, "_loaded", False)
    monkeypatch.setattr(tracing, "_api", None)
    assert tracing.start_span("GET", "/status", "", "r7", headers()) is None
    assert tracing._loaded and tracing._api is None  # looked for once, not at every request


def test_the_global_provider_is_used() -> None:
    script = """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from dualserve.serving import tracing

        assert tracing.start_span("GET", "/status", "", "r8", {}.get) is None  # not configured yet
        provider = TracerProvider()
        spans = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        assert tracing.start_span("GET", "/status", "", "r8", {}.get) is None  # looked less than a second ago
        import time
        time.sleep(tracing.RECHECK_EVERY)  # a provider set at startup is seen within a second
        tracing.end_span(tracing.start_span("GET", "/status", "", "r9", {}.get), 200, 2)
        print(*(span.name for span in spans.get_finished_spans()), sep=",")
    """
    assert run_python(script, {}).strip() == "GET /status"
