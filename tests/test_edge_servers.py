"""The edge on real servers: ``/metrics`` summed over two worker processes, under uvicorn and gunicorn,
scraped over loopback; and a rate limit counted in Redis by every process of a cluster."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import redis_server
from tests.servers import MOUNTED, dualserve_command, running
from tests.workers import dualserve_worker

PIPELINES = Path(__file__).parent / "pipelines"


def requests_total(text: str, pipeline: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dualserve_requests_total" and sample.labels.get("pipeline") == pipeline
    )


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_metrics_sum_every_worker_process(server: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server, "--workers", "2", "--state-dir", str(tmp_path / "state"))
    with running(command, port) as started:
        served_by: set[int] = set()
        # New connections each time, on both frontends, until both workers have answered some.
        for index in range(200):
            prefix = "" if index % 2 else MOUNTED[server]
            served_by.add(httpx2.get(f"{started.url}{prefix}/setup_log/run", timeout=10).json()["pid"])
            if len(served_by) == 2 and index >= 39:
                break
        assert len(served_by) == 2, "one worker answered every request"
        sent = index + 1
        totals = {
            requests_total(httpx2.get(f"{started.url}{prefix}/metrics", timeout=10).text, "setup_log")
            for prefix in ("", MOUNTED[server])
            for _ in range(4)
        }
        # Whichever worker answers the scrape, the total is every worker's.
        assert totals == {sent}


def test_a_rate_limit_with_a_broker_is_counted_by_every_api_process(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        store = str(tmp_path / "store")
        with dualserve_worker(PIPELINES, redis.url, store, tmp_path / "w"):
            common = ["--broker", redis.url, "--store", store, "--rate-limit", "4/hour"]
            a_command, a_port = dualserve_command(PIPELINES, "uvicorn", *common, "--state-dir", str(tmp_path / "a"))
            b_command, b_port = dualserve_command(PIPELINES, "gunicorn", *common, "--state-dir", str(tmp_path / "b"))
            with running(a_command, a_port) as a, running(b_command, b_port) as b:
                statuses = [httpx2.get(f"{url}/counter/run", timeout=20).status_code for url in (a.url, b.url) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]
