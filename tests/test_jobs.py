"""Jobs (docs/contract.md section 6) on every frontend, one set of assertions: submit, follow,
fetch the stored result with every HTTP rule of /run, cancel, fail, idempotency, events.

Each test has a state directory of its own; the embedded runner's threads run the jobs in this
process. Real servers, several processes and a crash are in tests/test_jobs_servers.py.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import dualserve
from dualserve import BasePipelineWrapper, HTTPError, Registry
from dualserve.serving import jobs
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, frontend_client
from tests.wrappers import png_bytes

PREFIX = {"fastapi": "", "flask": "", "flask-in-fastapi": "/flask", "fastapi-in-flask": "/fastapi"}
JOB_KEYS = {
    "id",
    "pipeline",
    "status",
    "progress",
    "message",
    "created_at",
    "started_at",
    "ended_at",
    "expires_at",
    "result_url",
    "error",
}


class Quick(BasePipelineWrapper):
    def setup(self) -> None:
        self.runs = 0
        self.lock = threading.Lock()

    def run_api(self, color: str = "red") -> bytes:
        with self.lock:
            self.runs += 1
        return png_bytes(color=color)


class Steps(BasePipelineWrapper):
    def run_api(self, steps: int = 4) -> str:
        for step in range(steps):
            dualserve.progress(step / steps, f"step {step + 1} of {steps}")
            time.sleep(0.06)  # reports closer than 50 ms are only checked for a cancel, not recorded
        return f"{steps} steps"


class Endless(BasePipelineWrapper):
    def setup(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()

    def run_api(self) -> str:
        self.started.set()
        try:
            for _ in range(1000):
                dualserve.progress(None, "working")
                time.sleep(0.02)
        finally:
            self.stopped.set()
        return "never"


class Teapot(BasePipelineWrapper):
    def run_api(self) -> str:
        raise HTTPError(418, "I'm a teapot")


@pytest.fixture
def wrappers() -> dict[str, Any]:
    return {"quick": Quick(), "steps": Steps(), "endless": Endless(), "teapot": Teapot()}


@pytest.fixture
def service(wrappers: dict[str, Any], tmp_path: Path) -> Iterator[Service]:
    service = Service(Registry.from_wrappers(wrappers), state_dir=tmp_path / "state")
    yield service
    if service._jobs is not None:
        service._jobs.stop()


@pytest.fixture(params=FRONTENDS)
def frontend(request: pytest.FixtureRequest, service: Service) -> Iterator[tuple[str, httpx2.Client]]:
    with frontend_client(request.param, service) as client:
        yield request.param, client


def ended(client: httpx2.Client, job_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def test_a_job_is_submitted_run_and_its_result_served_from_the_store(
    frontend: tuple[str, httpx2.Client], wrappers: dict[str, Any]
) -> None:
    name, client = frontend
    submitted = client.post("/quick/jobs", json={"color": "blue"})
    assert submitted.status_code == 202
    job = submitted.json()
    assert set(job) == JOB_KEYS
    assert (job["pipeline"], job["status"] in ("queued", "running", "succeeded")) == ("quick", True)
    assert submitted.headers["location"] == f"{PREFIX[name]}/jobs/{job['id']}"
    assert submitted.headers["retry-after"] == "1"

    job = ended(client, job["id"])
    assert job["status"] == "succeeded"
    assert job["progress"] == 1.0
    assert job["result_url"] == f"{PREFIX[name]}/jobs/{job['id']}/result"
    assert job["created_at"] <= job["started_at"] <= job["ended_at"] < job["expires_at"]

    result = client.get(f"/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.content == png_bytes(color="blue") == client.post("/quick/run", json={"color": "blue"}).content
    assert result.headers["content-type"] == "image/png"
    assert result.headers["accept-ranges"] == "bytes"
    etag = result.headers["etag"]
    runs = wrappers["quick"].runs
    # Stored: the ETag holds, and HEAD, 304 and Range never run the pipeline again.
    head = client.head(f"/jobs/{job['id']}/result")
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
    assert client.get(f"/jobs/{job['id']}/result", headers={"if-none-match": etag}).status_code == 304
    ranged = client.get(f"/jobs/{job['id']}/result", headers={"range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, result.content[:10])
    assert wrappers["quick"].runs == runs


def test_prefer_respond_async_on_run(frontend: tuple[str, httpx2.Client]) -> None:
    name, client = frontend
    answer = client.post("/quick/run", json={}, headers={"prefer": "respond-async"})
    assert answer.status_code == 202
    assert answer.headers["preference-applied"] == "respond-async"
    assert answer.headers["location"] == f"{PREFIX[name]}/jobs/{answer.json()['id']}"
    assert ended(client, answer.json()["id"])["status"] == "succeeded"
    # Without the preference, /run answers as ever.
    assert client.post("/quick/run", json={}).headers["content-type"] == "image/png"


def test_prefer_wait_holds_until_the_job_ends(frontend: tuple[str, httpx2.Client]) -> None:
    name, client = frontend
    answer = client.post("/steps/jobs", json={"steps": 3}, headers={"prefer": "wait=10"})
    assert answer.status_code == 201
    job = answer.json()
    assert job["status"] == "succeeded"
    assert answer.headers["location"] == f"{PREFIX[name]}/jobs/{job['id']}"
    assert client.get(f"/jobs/{job['id']}/result").json() == "3 steps"


def test_idempotency_key(frontend: tuple[str, httpx2.Client], wrappers: dict[str, Any]) -> None:
    _, client = frontend
    key = {"idempotency-key": "order-17"}
    first = client.post("/quick/jobs", json={"color": "green"}, headers=key).json()
    assert ended(client, first["id"])["status"] == "succeeded"
    runs = wrappers["quick"].runs
    again = client.post("/quick/jobs", json={"color": "green"}, headers=key)
    assert again.status_code in (201, 202)
    assert again.json()["id"] == first["id"]
    other = client.post("/quick/jobs", json={"color": "red"}, headers=key)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    time.sleep(0.2)
    assert wrappers["quick"].runs == runs  # no second run


def test_a_running_job_is_409_then_canceled_by_delete(
    frontend: tuple[str, httpx2.Client], wrappers: dict[str, Any]
) -> None:
    _, client = frontend
    job = client.post("/endless/jobs", json={}).json()
    assert wrappers["endless"].started.wait(10)
    early = client.get(f"/jobs/{job['id']}/result")
    assert early.status_code == 409
    assert early.headers["retry-after"] == "1"
    assert early.json()["detail"] == "The job is running; its result is not ready."
    deadline = time.monotonic() + 10
    while (running := client.get(f"/jobs/{job['id']}").json())["message"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (running["status"], running["progress"], running["message"]) == ("running", None, "working")

    deleted = client.delete(f"/jobs/{job['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "canceled"
    assert wrappers["endless"].stopped.wait(10)  # progress() raised Canceled in run_api
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert client.get(f"/jobs/{job['id']}/result").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404


def test_a_failed_job_answers_its_error(frontend: tuple[str, httpx2.Client]) -> None:
    _, client = frontend
    job = ended(client, client.post("/teapot/jobs", json={}).json()["id"])
    assert job["status"] == "failed"
    assert job["error"] == {"status": 418, "detail": "I'm a teapot"}
    assert job["result_url"] is None
    result = client.get(f"/jobs/{job['id']}/result")
    assert (result.status_code, result.json()) == (418, {"detail": "I'm a teapot"})


def test_bad_requests_record_nothing(frontend: tuple[str, httpx2.Client], service: Service) -> None:
    _, client = frontend
    invalid = client.post("/steps/jobs", json={"steps": "many"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "steps"]
    assert client.post("/nope/jobs", json={}).status_code == 404
    assert client.get("/jobs/unknown").status_code == 404
    assert client.get("/jobs/not%20an%20id").status_code == 404
    assert client.put("/jobs/unknown").status_code == 405
    assert client.post("/quick/jobs", json={}, headers={"idempotency-key": "k" * 300}).status_code == 400


def test_events_follow_the_job_and_resume_after_last_event_id(frontend: tuple[str, httpx2.Client]) -> None:
    _, client = frontend
    job = client.post("/steps/jobs", json={"steps": 3}).json()
    stream = client.get(f"/jobs/{job['id']}/events")
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-store"
    events = parse_events(stream.text)
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [event["event"] for event in events][0] == "queued"
    assert events[-1]["event"] == "succeeded"
    assert any(event["data"]["message"] == "step 2 of 3" for event in events)
    # Resumed after the third event: exactly the rest, nothing lost, nothing twice.
    resumed = parse_events(client.get(f"/jobs/{job['id']}/events", headers={"last-event-id": str(ids[2])}).text)
    assert [int(event["id"]) for event in resumed] == ids[3:]


def test_progress_is_a_no_op_outside_a_job(frontend: tuple[str, httpx2.Client]) -> None:
    _, client = frontend
    assert client.get("/steps/run", params={"steps": 2}).json() == "2 steps"


def parse_events(text: str) -> list[dict[str, Any]]:
    import json

    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append({"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])})
    return events


class Sized(BasePipelineWrapper):
    def run_api(self, size: int = 1000) -> bytes:
        return os.urandom(size)


@pytest.mark.parametrize("name", FRONTENDS)
def test_the_store_keeps_to_its_size_bound(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "SHRINK_EVERY", 0.0)  # checked after every stored result
    service = Service(Registry.from_wrappers({"sized": Sized()}), state_dir=tmp_path / "state", store_max_bytes=5000)
    try:
        with frontend_client(name, service) as client:
            first = client.post("/sized/jobs", json={"size": 3000}, headers={"prefer": "wait=10"}).json()
            assert client.get(f"/jobs/{first['id']}/result").status_code == 200
            second = client.post("/sized/jobs", json={"size": 3000}, headers={"prefer": "wait=10"}).json()
            # Over the bound: the least recently used result went; the job is still known.
            gone = client.get(f"/jobs/{first['id']}/result")
            assert (gone.status_code, gone.json()) == (410, {"detail": "The job's result is no longer stored."})
            assert client.get(f"/jobs/{first['id']}").json()["status"] == "succeeded"
            assert len(client.get(f"/jobs/{second['id']}/result").content) == 3000
    finally:
        service.jobs.stop()


@pytest.mark.parametrize("name", FRONTENDS)
def test_a_job_that_ended_as_it_was_recorded_is_still_accepted_without_a_wait(
    name: str, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner of another thread may claim and finish a job between its record's write and
    # the read that answers the submit: without Prefer: wait, that is still a 202.
    records = service.jobs.records
    create = records.create

    def create_then_finish(*args: Any, **kwargs: Any) -> Any:
        record, created = create(*args, **kwargs)
        return dataclasses.replace(record, status="succeeded"), created

    monkeypatch.setattr(records, "create", create_then_finish)
    with frontend_client(name, service) as client:
        assert client.post("/quick/jobs", json={}).status_code == 202
