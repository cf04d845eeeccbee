"""Start ``dualserve worker`` (a real Celery worker) for the scale-out tests, and stop it by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.servers import DUALSERVE

__all__ = ["Worker", "celery_worker", "dualserve_worker"]


@dataclass
class Worker:
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """The pool's processes, which run the tasks (the parent only hands them out)."""
        return [child.pid for child in psutil.Process(self.process.pid).children()]


@contextmanager
def dualserve_worker(
    pipelines: Path,
    broker: str,
    store: str,
    state_dir: Path,
    concurrency: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Worker]:
    """A running ``dualserve worker``, its pool's processes started and set up."""
    command = [
        DUALSERVE,
        "worker",
        "--pipelines-dir",
        str(pipelines),
        "--broker",
        broker,
        "--store",
        store,
        "--state-dir",
        str(state_dir),
        "--concurrency",
        str(concurrency),
        "--log-level",
        "info",
    ]
    with started(command, concurrency, env) as worker:
        yield worker


@contextmanager
def celery_worker(pipelines: Path, broker: str, store: str, concurrency: int = 1) -> Iterator[Worker]:
    """``celery -A dualserve.cluster.app worker``, as a team that starts Celery itself does."""
    celery = str(Path(DUALSERVE).with_name("celery"))
    command = [celery, "-A", "dualserve.cluster.app", "worker", "-Q", "dualserve", "-c", str(concurrency), "-l", "INFO"]
    env = {"DUALSERVE_BROKER": broker, "DUALSERVE_STORE": store, "DUALSERVE_PIPELINES_DIR": str(pipelines)}
    with started(command, concurrency, env) as worker:
        yield worker


@contextmanager
def started(command: list[str], concurrency: int, env: dict[str, str] | None) -> Iterator[Worker]:
    with tempfile.NamedTemporaryFile("w+", prefix="worker-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        # A session of its own: the worker and its pool are stopped together, by the group's id.
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    worker = Worker(process, log_path)
    try:
        deadline = time.monotonic() + 30
        while " ready." not in worker.log() or len(worker.children()) < concurrency:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{worker.log()}")
            time.sleep(0.1)
        yield worker
    finally:
        stop(process)
        log_path.unlink(missing_ok=True)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the worker's group (Celery's warm shutdown), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a pool process the parent left behind
    except ProcessLookupError:
        pass
