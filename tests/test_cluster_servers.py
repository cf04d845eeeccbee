"""Scale-out on real processes: ``dualserve run --broker`` under uvicorn and gunicorn, ``dualserve
worker`` (Celery), ``redis-server``, and S3 through moto's standalone server.

- Two API processes answer for each other's jobs, and a stream reaches the client as it is made.
- A worker process killed with SIGKILL mid-job: the job is delivered again and ends once.
- Redis stopped: 503 JSON with Retry-After, no traceback; started again: accepted jobs go on.
- An S3 store: results served through the API with Range and ETag, or by a 303 to a presigned URL.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.redis_server import RedisServer, redis_server
from tests.servers import MOUNTED, dualserve_command, free_port, job, running, until
from tests.workers import celery_worker, dualserve_worker

PIPELINES = Path(__file__).parent / "pipelines"


def ended(base: str, job_id: str) -> dict[str, Any] | None:
    found = job(base, job_id)
    return found if found["status"] in ("succeeded", "failed", "canceled") else None


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def api_command(server: str, broker: str, store: str, state: Path, *extra: str) -> tuple[list[str], int]:
    return dualserve_command(PIPELINES, server, "--broker", broker, "--store", store, "--state-dir", str(state), *extra)


def test_two_api_processes_answer_for_each_others_jobs_and_relay_streams_as_made(
    redis: RedisServer, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    setups = tmp_path / "setups.log"
    env = {"DUALSERVE_TEST_SETUP_LOG": str(setups)}
    with dualserve_worker(PIPELINES, redis.url, store, tmp_path / "w", concurrency=2, env=env) as worker:
        uvicorn_command, uvicorn_port = api_command("uvicorn", redis.url, store, tmp_path / "a")
        gunicorn_command, gunicorn_port = api_command("gunicorn", redis.url, store, tmp_path / "b", "--workers", "2")
        with running(uvicorn_command, uvicorn_port, env) as a, running(gunicorn_command, gunicorn_port, env) as b:
            for here, there in ((a.url, b.url), (b.url, a.url)):
                submitted = httpx2.post(f"{here}/counter/jobs", json={"text": "shared"}, timeout=10)
                assert submitted.status_code == 202
                job_id = submitted.json()["id"]
                assert until(functools.partial(ended, there, job_id))["status"] == "succeeded"
                mine = httpx2.get(f"{here}/jobs/{job_id}/result", timeout=10)
                theirs = httpx2.get(f"{there}/jobs/{job_id}/result", timeout=10)
                assert mine.status_code == theirs.status_code == 200
                assert mine.content == theirs.content and mine.text.startswith('"shared ')
                assert mine.headers["etag"] == theirs.headers["etag"]
                assert httpx2.delete(f"{there}/jobs/{job_id}", timeout=10).status_code == 200
                assert httpx2.get(f"{here}/jobs/{job_id}", timeout=10).status_code == 404
            # A stream's first chunk arrives before the pipeline makes the next: it waits for a
            # file that only a client holding the first chunk creates.
            for server, base in (("uvicorn", a.url), ("gunicorn", b.url)):
                for prefix in ("", MOUNTED[server]):
                    signal_file = tmp_path / f"go-{server}-{prefix.strip('/')}"
                    url = f"{base}{prefix}/first_then_wait/run"
                    with httpx2.stream("GET", url, params={"signal": str(signal_file)}, timeout=30) as response:
                        chunks = response.iter_raw()
                        assert next(chunks) == b"first;"
                        signal_file.touch()
                        assert b"".join(chunks) == b"released"
        # setup() ran in the worker's two pool processes only: none in the three API processes.
        assert sorted(int(pid) for pid in setups.read_text().split()) == sorted(worker.children())


def test_a_worker_killed_mid_job_runs_it_again_and_it_ends_once(redis: RedisServer, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    runs = tmp_path / "runs.log"
    env = {"DUALSERVE_TEST_JOB_LOG": str(runs)}
    with dualserve_worker(PIPELINES, redis.url, store, tmp_path / "w", concurrency=1, env=env) as worker:
        command, port = api_command("uvicorn", redis.url, store, tmp_path / "a")
        with running(command, port) as api:
            submitted = httpx2.post(f"{api.url}/slow_job/jobs", json={"seconds": 2, "label": "crash"}, timeout=10)
            job_id = submitted.json()["id"]
            until(lambda: (job(api.url, job_id)["progress"] or 0) > 0)
            (victim,) = worker.children()
            assert runs.read_text().split() == ["crash", str(victim)]
            os.kill(victim, signal.SIGKILL)  # the pool process running it, as the OOM killer would
            finished = until(lambda: ended(api.url, job_id), 60)
            assert finished["status"] == "succeeded", finished
            assert httpx2.get(f"{api.url}/jobs/{job_id}/result", timeout=10).json() == "crash done"
            events = httpx2.get(f"{api.url}/jobs/{job_id}/events", timeout=10).text
            statuses = [json.loads(line[6:])["status"] for line in events.splitlines() if line.startswith("data: ")]
            assert statuses.count("succeeded") == 1  # ended once
        lines = runs.read_text().splitlines()
        assert len(lines) == 2 and lines[1].split()[1] != str(victim)  # run again, by the new pool process


def test_redis_stopped_answers_503_and_accepted_jobs_go_on_once_it_is_back(tmp_path: Path) -> None:
    # Redis as production runs it for dualserve: with its append-only file, so a restart keeps
    # the queue and the records.
    with redis_server(tmp_path / "redis", appendonly=True) as redis:
        store = str(tmp_path / "store")
        with dualserve_worker(PIPELINES, redis.url, store, tmp_path / "w", concurrency=1):
            command, port = api_command("gunicorn", redis.url, store, tmp_path / "a")
            with running(command, port) as api:
                running_job = httpx2.post(f"{api.url}/slow_job/jobs", json={"seconds": 2}, timeout=10).json()["id"]
                until(lambda: job(api.url, running_job)["status"] == "running")
                queued_job = httpx2.post(f"{api.url}/counter/jobs", json={"text": "later"}, timeout=10).json()["id"]
                redis.stop()
                for prefix in ("", MOUNTED["gunicorn"]):
                    for method, path, body in (
                        ("GET", f"/jobs/{queued_job}", None),
                        ("POST", "/counter/jobs", {"text": "x"}),
                        ("GET", "/counter/run", None),
                    ):
                        answer = httpx2.request(method, f"{api.url}{prefix}{path}", json=body, timeout=10)
                        assert answer.status_code == 503, (prefix, path, answer.text)
                        assert answer.headers["retry-after"] == "5"
                        assert answer.json() == {"detail": "The job store cannot be reached; try again shortly."}
                assert "Traceback" not in api.log()
                redis.start()
                for job_id in (running_job, queued_job):
                    assert until(functools.partial(ended, api.url, job_id), 90)["status"] == "succeeded"
                assert httpx2.get(f"{api.url}/jobs/{queued_job}/result", timeout=10).text.startswith('"later ')


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone S3 server (real HTTP on loopback) with a bucket; its endpoint in the
    environment as any S3-compatible store's would be."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket="results")
    try:
        yield "s3://results/dualserve"
    finally:
        server.stop()


def test_results_on_s3_are_served_with_range_or_by_a_presigned_redirect(
    redis: RedisServer, s3: str, tmp_path: Path
) -> None:
    with dualserve_worker(PIPELINES, redis.url, s3, tmp_path / "w", concurrency=1):
        served_command, served_port = api_command("uvicorn", redis.url, s3, tmp_path / "a")
        redirect_command, redirect_port = api_command("gunicorn", redis.url, s3, tmp_path / "b", "--s3-redirect")
        with running(served_command, served_port) as served, running(redirect_command, redirect_port) as redirected:
            submitted = httpx2.post(
                f"{served.url}/data_file/jobs", headers={"prefer": "wait=20"}, json={}, timeout=30
            ).json()
            assert submitted["status"] == "succeeded", submitted
            expected = (Path(__file__).parent / "data" / "range.bin").read_bytes()
            result = httpx2.get(f"{served.url}/jobs/{submitted['id']}/result", timeout=10)
            assert (result.status_code, result.content) == (200, expected)
            ranged = httpx2.get(
                f"{served.url}/jobs/{submitted['id']}/result",
                headers={"range": "bytes=3-10", "if-range": result.headers["etag"]},
                timeout=10,
            )
            assert (ranged.status_code, ranged.content) == (206, expected[3:11])
            moved = httpx2.get(f"{redirected.url}/jobs/{submitted['id']}/result", timeout=10)
            assert moved.status_code == 303
            assert moved.headers["location"].startswith(os.environ["AWS_ENDPOINT_URL"])
            fetched = httpx2.get(moved.headers["location"], timeout=10)
            assert fetched.content == expected
            assert fetched.headers["content-type"] == result.headers["content-type"]
            assert fetched.headers.get("content-disposition") == result.headers.get("content-disposition")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_client_that_leaves_stops_the_stream_on_the_worker(redis: RedisServer, server: str, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with dualserve_worker(PIPELINES, redis.url, store, tmp_path / "w", concurrency=1):
        command, port = api_command(server, redis.url, store, tmp_path / "a")
        with running(command, port) as api:
            marker = tmp_path / "closed"
            with httpx2.stream("GET", f"{api.url}/endless/run", params={"marker": str(marker)}, timeout=10) as response:
                assert len(next(response.iter_raw())) > 0
            # The generator's finally ran on the worker, and its one process is free again.
            until(marker.exists, 20)
            assert marker.read_text() == "closed"
            assert httpx2.get(f"{api.url}/counter/run", timeout=20).status_code == 200


def test_celery_started_by_hand_is_a_worker_too(redis: RedisServer, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with (
        celery_worker(PIPELINES, redis.url, store),
        running(*api_command("uvicorn", redis.url, store, tmp_path / "a")) as api,
    ):
        done = httpx2.post(f"{api.url}/counter/jobs", json={"text": "hand"}, headers={"prefer": "wait=20"}, timeout=30)
        assert done.status_code == 201 and done.json()["status"] == "succeeded"
        assert httpx2.get(f"{api.url}/counter/run", params={"text": "relayed"}, timeout=20).text.startswith('"relayed ')
