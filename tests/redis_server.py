"""A real ``redis-server`` (Debian's) on a free loopback port, for the scale-out tests.

Persistence is off unless asked (``appendonly=True``, for the test that restarts Redis and expects
accepted jobs to go on). Absent locally, the tests that need it skip with the reason; under
``CI=true`` (``.ci/run`` installs it) a missing one fails them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .servers import free_port

__all__ = ["RedisServer", "redis_server", "require_redis"]


def require_redis() -> str:
    """The path of ``redis-server``; skips (or fails under CI) when it is not installed."""
    found = shutil.which("redis-server")
    if found is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server); CI installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@dataclass
class RedisServer:
    port: int
    directory: Path
    appendonly: bool
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            require_redis(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
        ]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start in 10 s")

    def stop(self) -> None:
        """Stop it as an operator does (SIGTERM: with ``appendonly`` its data is on disk)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def redis_server(directory: Path, appendonly: bool = False) -> Iterator[RedisServer]:
    """A running ``redis-server`` in ``directory``, stopped (by its PID) at the end."""
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), directory, appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()
