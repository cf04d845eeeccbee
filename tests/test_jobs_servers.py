"""Jobs on real servers: a 202 job survives a SIGKILL, and worker processes share one store.

The server is ``dualserve run`` on tests/pipelines with a state directory of the test's own;
``slow_job`` writes a line per run it starts (``DUALSERVE_TEST_JOB_LOG``), so a test counts runs.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import httpx2
import psutil
import pytest

from tests.servers import MOUNTED, dualserve_command, job, running, until

PIPELINES = Path(__file__).parent / "pipelines"


def succeeded(base: str, job_id: str) -> bool:
    return bool(job(base, job_id)["status"] == "succeeded")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_job_survives_a_sigkill_and_runs_again(server: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    env = {"DUALSERVE_TEST_JOB_LOG": str(log)}
    state = ["--state-dir", str(tmp_path / "state")]
    command, port = dualserve_command(PIPELINES, server, *state)
    with running(command, port, env) as started:
        base = started.url
        submitted = httpx2.post(f"{base}/slow_job/jobs", json={"seconds": 3, "label": "crash"}, timeout=10)
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        until(lambda: (job(base, job_id)["progress"] or 0) > 0)
        # The process that runs it dies mid-run: uvicorn's one process, or gunicorn's worker (its
        # arbiter then starts another, as after an out-of-memory kill).
        victims = (
            [started.process.pid]
            if server == "uvicorn"
            else [c.pid for c in psutil.Process(started.process.pid).children()]
        )
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        if server == "uvicorn":
            started.process.wait(10)
            command, port = dualserve_command(PIPELINES, server, *state)
            with running(command, port, env) as again:
                finished = until(
                    lambda: job(again.url, job_id)["status"] in ("succeeded", "failed") and job(again.url, job_id)
                )
                result = httpx2.get(f"{again.url}/jobs/{job_id}/result", timeout=10)
        else:
            finished = until(lambda: job(base, job_id)["status"] in ("succeeded", "failed") and job(base, job_id), 60)
            result = httpx2.get(f"{base}/jobs/{job_id}/result", timeout=10)
    assert finished["status"] == "succeeded", finished
    assert result.json() == "crash done"
    assert len(log.read_text().splitlines()) == 2  # interrupted once, run again once


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_worker_processes_share_the_jobs(server: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    command, port = dualserve_command(PIPELINES, server, "--workers", "2", "--state-dir", str(tmp_path / "state"))
    with running(command, port, {"DUALSERVE_TEST_JOB_LOG": str(log)}) as started:
        base = started.url
        mounted = base + MOUNTED[server]
        ids = [
            httpx2.post(
                f"{(base, mounted)[index % 2]}/slow_job/jobs", json={"seconds": 0.4, "label": f"j{index}"}, timeout=10
            ).json()["id"]
            for index in range(8)
        ]
        # Every job ends, whichever process ran it, and either frontend of either process answers for it.
        for index, job_id in enumerate(ids):
            until(functools.partial(succeeded, base, job_id), 60)
            for prefix in (base, mounted):
                assert httpx2.get(f"{prefix}/jobs/{job_id}/result", timeout=10).json() == f"j{index} done"
    runs = log.read_text().splitlines()
    assert sorted(line.split()[0] for line in runs) == sorted(f"j{index}" for index in range(8))  # each once
    assert len({line.split()[1] for line in runs}) == 2  # both processes ran jobs
