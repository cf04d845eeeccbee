"""Scaled out (docs/contract.md section 7), every frontend answers as the embedded service does.

A real ``redis-server`` and a real ``dualserve worker`` (Celery, two pool processes) on
tests/pipelines; the API side is a service with a cluster, which holds no model, served by each
frontend in this process. Each case is sent to it and to an embedded service on the same frontend,
and the two answers must be the same status, headers and bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dualserve.cluster.connection import Cluster
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, VOLATILE, frontend_client
from tests.redis_server import RedisServer, redis_server
from tests.workers import Worker, dualserve_worker

PIPELINES = Path(__file__).parent / "pipelines"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def setup_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "setups.log"


@pytest.fixture(scope="module")
def worker(
    redis: RedisServer, store: Path, setup_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = {"DUALSERVE_TEST_SETUP_LOG": str(setup_log)}
    state = tmp_path_factory.mktemp("worker-state")
    with dualserve_worker(PIPELINES, redis.url, str(store), state, concurrency=2, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def api(redis: RedisServer, store: Path, worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    cluster = Cluster(redis.url, str(store), tmp_path_factory.mktemp("api-state"), role="api")
    service = Service(Registry.from_directory(PIPELINES, set_up=False), cluster=cluster)
    yield service
    service.jobs.stop()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(Registry.from_directory(PIPELINES), state_dir=tmp_path_factory.mktemp("embedded"))
    yield service
    service.jobs.stop()


def answer(response: httpx2.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((key, value) for key, value in response.headers.items() if key not in VOLATILE)
    return response.status_code, headers, response.content


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/picture/run?width=40", {}),
    ("HEAD", "/picture/run", {}),
    ("GET", "/picture/run", {"headers": {"accept": "image/webp"}}),
    ("GET", "/several/run", {}),
    ("GET", "/data_file/run", {"headers": {"range": "bytes=2-9"}}),
    ("GET", "/data_file/run", {"headers": {"range": "bytes=0-1,4-5"}}),
    ("POST", "/echo_size/run", {"json": {"data": "hello"}}),
    ("POST", "/echo_size/run", {"files": {"file": ("a.bin", b"\x00" * 5000, "application/octet-stream")}}),
    # Over the size sent inside the task message: the body goes through Redis on its own.
    ("POST", "/echo_size/run", {"json": {"data": "x" * 600_000}}),
    ("POST", "/echo_size/run", {"json": {"data": ["not", "text"]}}),
    ("GET", "/picture/run?width=abc", {}),
    ("GET", "/nope/run", {}),
    ("DELETE", "/picture/run", {}),
    ("GET", "/big_stream/run?megabytes=3", {}),
    ("GET", "/status", {}),
]


@pytest.mark.parametrize("name", FRONTENDS)
def test_every_answer_is_the_embedded_services(name: str, api: Service, embedded: Service) -> None:
    with frontend_client(name, api) as scaled, frontend_client(name, embedded) as alone:
        for method, path, options in CASES:
            got, expected = scaled.request(method, path, **options), alone.request(method, path, **options)
            assert answer(got) == answer(expected), (method, path)
        # A validator from one answers a conditional request on the other: 304 on both.
        etag = alone.get("/data_file/run").headers["etag"]
        got = scaled.get("/data_file/run", headers={"if-none-match": etag})
        assert answer(got) == answer(alone.get("/data_file/run", headers={"if-none-match": etag}))
        assert got.status_code == 304


def test_the_api_holds_no_model_and_each_worker_process_sets_up_once(
    api: Service, worker: Worker, setup_log: Path
) -> None:
    with frontend_client("fastapi", api) as client:
        pids = {client.get("/setup_log/run").json()["pid"] for _ in range(20)}
    setups = [int(line) for line in setup_log.read_text().split()]
    # setup() ran once in each pool process, never in this (the API's) process nor the parent.
    assert sorted(setups) == sorted(worker.children())
    assert pids <= set(setups)


@pytest.mark.parametrize("name", FRONTENDS)
def test_jobs_run_on_the_workers(name: str, api: Service) -> None:
    with frontend_client(name, api) as client:
        submitted = client.post("/slow_job/jobs", json={"seconds": 0.4, "label": name})
        assert submitted.status_code == 202
        job = submitted.json()
        assert submitted.headers["location"].endswith(f"/jobs/{job['id']}")
        location = f"/jobs/{job['id']}"  # the client's base URL has the frontend's mount prefix
        events = client.get(f"{location}/events").text  # follows the job to its end
        statuses = [json.loads(line[6:])["status"] for line in events.splitlines() if line.startswith("data: ")]
        assert statuses[0] in ("queued", "running") and statuses[-1] == "succeeded"
        assert "running" in statuses
        done = client.get(location).json()
        assert (done["id"], done["status"], done["progress"]) == (job["id"], "succeeded", 1.0)
        result = client.get(f"{location}/result")
        assert (result.status_code, result.json()) == (200, f"{name} done")
        # A stored result: an ETag that holds, Range and 304, with no run.
        assert result.headers["accept-ranges"] == "bytes"
        ranged = client.get(f"{location}/result", headers={"range": "bytes=1-3"})
        assert (ranged.status_code, ranged.content) == (206, result.content[1:4])
        again = client.get(f"{location}/result", headers={"if-none-match": result.headers["etag"]})
        assert again.status_code == 304
        # Waiting in the request, and an unknown id: the dualserve record answers, not Celery's PENDING.
        waited = client.post("/counter/jobs", json={"text": "w"}, headers={"prefer": "wait=20"})
        assert waited.status_code == 201 and waited.json()["status"] == "succeeded"
        unknown = client.get("/jobs/no-such-job")
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"detail": "Job not found (unknown, expired or deleted)."},
        )
        bad = client.post("/slow_job/jobs", json={"seconds": "soon"})
        assert bad.status_code == 422  # checked by the API process: nothing was queued


@pytest.mark.parametrize("name", FRONTENDS)
def test_a_job_is_canceled_on_its_worker(name: str, api: Service) -> None:
    with frontend_client(name, api) as client:
        job = client.post("/slow_job/jobs", json={"seconds": 20, "label": "cancel"}).json()
        deadline = time.monotonic() + 20
        while client.get(f"/jobs/{job['id']}").json()["progress"] in (None, 0.0):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        canceled = client.delete(f"/jobs/{job['id']}")
        assert canceled.json()["status"] == "canceled"
        assert client.get(f"/jobs/{job['id']}").status_code == 404
    # The worker stopped the run at its next progress report: it is free for the next call.
    with frontend_client(name, api) as client:
        started = time.monotonic()
        assert client.post("/slow_job/jobs", json={"seconds": 0.1}, headers={"prefer": "wait=15"}).status_code == 201
        assert time.monotonic() - started < 15
