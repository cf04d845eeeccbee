"""Start ``dualserve run`` as a real process on loopback, watch its memory, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psutil

# The console script installed beside this interpreter: the command a user runs.
DUALSERVE = str(Path(sys.executable).with_name("dualserve"))
# Where each server puts the other frontend.
MOUNTED = {"uvicorn": "/flask", "gunicorn": "/fastapi", "flask": "/fastapi"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")


def dualserve_command(pipelines_dir: Path, server: str, *extra: str) -> tuple[list[str], int]:
    port = free_port()
    command = [DUALSERVE, "run", "--pipelines-dir", str(pipelines_dir), "--server", server, "--port", str(port), *extra]
    return command, port


@contextmanager
def dualserve_run(pipelines_dir: Path, server: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the base URL of a running ``dualserve run --server SERVER``."""
    command, port = dualserve_command(pipelines_dir, server, *extra)
    with running(command, port, env) as started:
        yield started.url


@contextmanager
def serve(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``command``, a server listening on ``port``; yield its base URL once /status answers."""
    with running(command, port, env) as started:
        yield started.url


@contextmanager
def running(
    command: list[str],
    port: int,
    env: dict[str, str] | None = None,
    ready_path: str = "/status",
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[Server]:
    # Output goes to a file, not a pipe: a pipe nobody reads fills up and stalls a chatty server.
    with tempfile.NamedTemporaryFile("w+", prefix="server-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,  # limits for the server alone, such as a file size limit
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, url + ready_path, log_path)
        yield Server(url, process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)


def _wait_until_ready(process: subprocess.Popen[str], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text(errors="replace")
            raise RuntimeError(f"the server exited with {process.returncode}:\n{output}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url} within 30 s")


def tree_rss(pid: int) -> int:
    """The resident memory of process ``pid`` and all its children (the workers), in bytes."""
    root = psutil.Process(pid)
    return sum(process.memory_info().rss for process in [root, *root.children(recursive=True)])


class Sampler:
    """A server's resident memory (its whole process tree) every ``interval`` seconds, while in use."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.rss: list[int] = [tree_rss(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss.append(tree_rss(self.pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """``check()``'s first true value, asked every 0.1 s; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s")


def job(base: str, job_id: str) -> dict[str, Any]:
    """``GET /jobs/{id}`` on the server at ``base``: the job's JSON."""
    answer: dict[str, Any] = httpx2.get(f"{base}/jobs/{job_id}", timeout=10).json()
    return answer
