"""The cache on real servers: two worker processes share one store, and an answer is made once.

The server is ``dualserve run`` on tests/pipelines with a state directory of the test's own;
``cached_counter`` and ``counter`` write a line per run (``DUALSERVE_TEST_CACHE_LOG``), so a test
counts runs whichever process made them.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import psutil
import pytest

from tests.servers import MOUNTED, dualserve_command, running

PIPELINES = Path(__file__).parent / "pipelines"


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_cached_pipeline_runs_once_across_two_workers(server: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    state = ["--workers", "2", "--state-dir", str(tmp_path / "state")]
    command, port = dualserve_command(PIPELINES, server, *state)
    with running(command, port, {"DUALSERVE_TEST_CACHE_LOG": str(log)}) as started:
        bases = (started.url, started.url + MOUNTED[server])
        params = {"text": "once", "seconds": "1.5"}

        def get(index: int, headers: dict[str, str] | None = None, *, text: str = "once") -> httpx2.Response:
            url = f"{bases[index % 2]}/cached_counter/run"
            return httpx2.get(url, params={**params, "text": text}, headers=headers, timeout=30)

        def both_workers_took_part() -> bool:
            # A worker that took a request of a cached pipeline has the cache's database open.
            workers = psutil.Process(started.process.pid).children(recursive=True)
            opened = [w for w in workers if any(f.path.endswith("cache.sqlite3") for f in w.open_files())]
            return len(opened) == 2

        # Rounds of 20 concurrent identical requests, each round a new key, until both workers
        # took requests (the kernel hands connections to either; one round nearly always does).
        for round_number in range(5):
            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(functools.partial(get, text=f"round{round_number}"), range(20)))
            assert [answer.status_code for answer in answers] == [200] * 20
            assert len({(answer.content, answer.headers["etag"]) for answer in answers}) == 1
            if both_workers_took_part():
                break
        assert both_workers_took_part()
        # One run per round, whichever worker made it.
        assert sorted(line.split()[1] for line in runs(log)) == [f"round{n}" for n in range(round_number + 1)]

        first = get(0)
        for index in range(4):
            again = get(index)
            assert (again.content, again.headers["etag"]) == (first.content, first.headers["etag"])
            assert again.headers["age"].isdigit()
            head = httpx2.head(f"{bases[index % 2]}/cached_counter/run", params=params, timeout=30)
            assert (head.status_code, head.headers["etag"]) == (200, first.headers["etag"])
            unchanged = get(index, {"if-none-match": first.headers["etag"]})
            assert unchanged.status_code == 304
            part = get(index, {"range": "bytes=100-199"})
            assert (part.status_code, part.content) == (206, first.content[100:200])
        assert [line.split()[1] for line in runs(log)].count("once") == 1


def test_cache_ttl_caches_every_pipeline(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    command, port = dualserve_command(PIPELINES, "uvicorn", "--cache-ttl", "60", "--state-dir", str(tmp_path / "s"))
    with running(command, port, {"DUALSERVE_TEST_CACHE_LOG": str(log)}) as started:
        first = httpx2.get(f"{started.url}/counter/run", params={"text": "x"}, timeout=30)
        again = httpx2.get(f"{started.url}/flask/counter/run", params={"text": "x"}, timeout=30)
        other = httpx2.get(f"{started.url}/counter/run", params={"text": "y"}, timeout=30)
        assert first.status_code == 200 and again.content == first.content and again.headers["age"].isdigit()
        assert other.content != first.content
    assert [line.split()[:2] for line in runs(log)] == [["counter", "x"], ["counter", "y"]]
