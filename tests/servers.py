"""Start ``dualserve run`` as a real process on loopback, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

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
    command: list[str], port: int, env: dict[str, str] | None = None, ready_path: str = "/status"
) -> Iterator[Server]:
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, url + ready_path)
        yield Server(url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _wait_until_ready(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"dualserve exited with {process.returncode}:\n{output}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url} within 30 s")
