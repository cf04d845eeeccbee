"""The bounded soak on real uvicorn and gunicorn servers with two workers each (see tests/soak.py).

Every completed answer is verified, and afterwards nothing is left over: no temp files, no file
descriptors or threads beyond the warmed-up server's, memory within a stated bound, the same
workers alive. ``DUALSERVE_SOAK_SECONDS`` lengthens the run (the README's figures used 300);
each run writes its figures to build/soak/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.servers import MOUNTED, Sampler, dualserve_command, running
from tests.soak import PIPELINES, Snapshot, leftovers, load
from tests.test_real_servers import eventually

SECONDS = float(os.environ.get("DUALSERVE_SOAK_SECONDS", "20"))
WARM_UP_SECONDS = 5.0
SETTLE_SECONDS = 15.0  # for connections to close and temp files to go once the clients stop
CLIENTS = 8
THREADS = "8"  # small pools fill during the warm-up, so later growth would be a leak
#: Bounds on the growth after the warm-up, for the whole process tree (master and two workers).
#: Thread pools (anyio's, asyncio's) start threads lazily up to their caps, so a few more may
#: appear; a leak (a thread held per disconnect, say) would add hundreds in a run.
FD_SLACK = 4
THREAD_SLACK = 16
RSS_BOUND = 32 * 1024 * 1024
# glibc gives each thread that allocates its own arena and keeps what it frees, so a threaded
# server's memory grows to a plateau (about 60 MB over the three processes here) that hides a
# leak; two arenas keep it flat, so growth means a leak. DUALSERVE_SOAK_ENV='{}' measures without.
ENV = json.loads(os.environ.get("DUALSERVE_SOAK_ENV", '{"MALLOC_ARENA_MAX": "2"}'))
REPORTS = Path(__file__).resolve().parent.parent / "build" / "soak"


@pytest.mark.parametrize("server_name", ["uvicorn", "gunicorn"])
def test_soak(server_name: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server_name, "--workers", "2", "--threads", THREADS)
    command += ["--log-level", "warning"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with running(command, port, {"TMPDIR": str(scratch), **ENV}) as started:
        bases = [started.url, started.url + MOUNTED[server_name]]
        warm = load(bases, WARM_UP_SECONDS, CLIENTS, seed=1)
        assert not warm.errors, warm.errors[:5]
        assert eventually(lambda: not leftovers(scratch), SETTLE_SECONDS), leftovers(scratch)
        before = Snapshot.of(started.process.pid)

        with Sampler(started.process.pid) as sampler:
            tally = load(bases, SECONDS, CLIENTS, seed=2)

        assert eventually(lambda: not leftovers(scratch), SETTLE_SECONDS), leftovers(scratch)
        assert eventually(lambda: Snapshot.of(started.process.pid).fds <= before.fds + FD_SLACK, SETTLE_SECONDS)
        after = Snapshot.of(started.process.pid)
        log = started.log()
    assert leftovers(scratch, running=False) == []  # the metrics folder went with the server
    figures = {
        "server": f"{server_name}, 2 workers, --threads {THREADS}",
        "env": ENV,
        "seconds": SECONDS,
        "clients": CLIENTS,
        "verified": dict(tally.verified),
        "hung_up": dict(tally.hung_up),
        "errors": len(tally.errors),
        "fds": [before.fds, after.fds],
        "threads": [before.threads, after.threads],
        "rss_mb": [round(before.rss / 2**20, 1), round(after.rss / 2**20, 1)],
        "temp_files_left": len(leftovers(scratch, running=False)),
        "rss_mb_every_5s": [round(rss / 2**20, 1) for rss in sampler.rss[::5]],
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{server_name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))

    assert not tally.errors, tally.errors[:5]
    assert sum(tally.verified.values()) > 0 and sum(tally.hung_up.values()) > 0, figures
    assert after.pids == before.pids, "a worker died or was replaced"
    assert after.fds <= before.fds + FD_SLACK, figures
    assert after.threads <= before.threads + THREAD_SLACK, figures
    assert after.rss - before.rss <= RSS_BOUND, figures
    assert "Traceback" not in log, log[-3000:]
