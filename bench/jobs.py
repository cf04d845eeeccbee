"""Jobs on the embedded store: a job's round trip against a plain /run, and submits per second.

    .venv/bin/python -m bench.jobs [--requests 300] [--seconds 5]

The server is ``dualserve run`` on bench/pipelines (uvicorn, pinned to CPU 0, a state directory
of its own); the client is this process, pinned to CPU 1, over keep-alive connections.

- Round trip: ``POST /png/jobs`` with ``Prefer: wait=10`` (answered 201 once the job has run), then
  ``GET`` its result, against ``GET /png/run`` of the same pipeline; sequential, medians and p99.
- Submits: 8 client threads ``POST /png/jobs`` for ``--seconds``, with one server worker process
  and with two; the jobs run meanwhile (one runner thread per process).
Results go to bench/results/jobs.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx2

from bench.run import BIN, CLIENT_CPU, ROOT, Variant, started

PIPELINES = ROOT / "bench" / "pipelines"


def server(workers: int, state: Path) -> Variant:
    command = [
        str(BIN / "dualserve"),
        "run",
        "--pipelines-dir",
        str(PIPELINES),
        "--log-level",
        "warning",
        "--workers",
        str(workers),
        "--state-dir",
        str(state),
        "--port",
        "{port}",
    ]
    return Variant(f"dualserve, {workers} worker(s)", command, "", {})


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def round_trips(base: str, count: int) -> dict[str, dict[str, float]]:
    jobs, runs = [], []
    with httpx2.Client(base_url=base, timeout=30) as client:
        for _ in range(20):  # warm up both paths
            client.get("/png/run")
            client.post("/png/jobs", json={}, headers={"prefer": "wait=10"})
        for _ in range(count):  # alternated, so a slow phase of the machine hits both alike
            start = time.perf_counter()
            submitted = client.post("/png/jobs", json={}, headers={"prefer": "wait=10"})
            assert submitted.status_code == 201, submitted.status_code
            result = client.get(f"/jobs/{submitted.json()['id']}/result")
            assert result.status_code == 200 and len(result.content) > 90_000
            jobs.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            assert client.get("/png/run").status_code == 200
            runs.append((time.perf_counter() - start) * 1000)
    summary = {}
    for name, values in (("job (submit with Prefer: wait, then result)", jobs), ("plain /run", runs)):
        summary[name] = {"median_ms": statistics.median(values), "p99_ms": percentile(values, 0.99)}
    return summary


def submits(base: str, seconds: float, threads: int = 8) -> float:
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def submit(index: int) -> None:
        with httpx2.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < deadline:
                assert client.post("/png/jobs", json={}).status_code == 202
                counts[index] += 1

    workers = [threading.Thread(target=submit, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="dualserve-bench-state-") as state:
        with started(server(1, Path(state) / "one")) as one:
            report["round_trip"] = round_trips(f"http://127.0.0.1:{one.port}", options.requests)
            report["submits_per_second, 1 worker"] = submits(f"http://127.0.0.1:{one.port}", options.seconds)
        with started(server(2, Path(state) / "two")) as two:
            report["submits_per_second, 2 workers"] = submits(f"http://127.0.0.1:{two.port}", options.seconds)
    out = ROOT / "bench" / "results" / "jobs.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
