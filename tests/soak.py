"""A bounded soak: a mix of requests against a real multi-worker server, every answer verified,
then the server's file descriptors, threads, temp files and memory accounted for.

The soak pipelines (tests/soak_pipelines) derive every byte from a seed, so the client knows
what each answer must be: bytes and files by content, streams whole, images by their decoded
pixels, uploads by the hash the server reports. Some downloads are cut off midway by a client
that resets its connection; those must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import psutil
from PIL import Image

from tests.test_real_servers import read_then_hang_up

PIPELINES = Path(__file__).parent / "soak_pipelines"
KINDS = ("small", "render", "file", "stream", "upload")
HANG_UP_SHARE = 0.15  # of file and stream downloads


@dataclass
class Tally:
    """What the clients saw."""

    verified: Counter[str] = field(default_factory=Counter)
    hung_up: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, problem: str | None, hung_up: bool = False) -> None:
        with self.lock:
            if problem is not None:
                self.errors.append(f"{kind}: {problem}")
            elif hung_up:
                self.hung_up[kind] += 1
            else:
                self.verified[kind] += 1


@dataclass(frozen=True)
class Snapshot:
    """The server's whole process tree at one moment."""

    pids: tuple[int, ...]
    fds: int
    threads: int
    rss: int

    @classmethod
    def of(cls, pid: int) -> Snapshot:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        return cls(
            pids=tuple(sorted(process.pid for process in processes)),
            fds=sum(process.num_fds() for process in processes),
            threads=sum(process.num_threads() for process in processes),
            rss=sum(process.memory_info().rss for process in processes),
        )


def _seeded(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _check(response: httpx2.Response, expected: bytes) -> str | None:
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    if response.content != expected:
        return f"{len(response.content)} bytes that differ from the {len(expected)} expected"
    return None


def one_request(client: httpx2.Client, base: str, rng: random.Random, tally: Tally) -> None:
    kind = rng.choice(KINDS)
    seed = rng.randrange(1 << 30)
    url = f"{base}/{kind}/run"
    try:
        if kind in ("file", "stream") and rng.random() < HANG_UP_SHARE:
            size = rng.randrange(1_000_000, 4_000_000)
            head = read_then_hang_up(f"{url}?seed={seed}&size={size}", want=rng.randrange(1, 200_000))
            problem = None if head.startswith(b"HTTP/1.1 200") else f"cut-off request answered {head[:40]!r}"
            tally.add(kind, problem, hung_up=True)
            return
        if kind == "small":
            size = rng.randrange(1, 100_000)
            tally.add(kind, _check(client.get(url, params={"seed": seed, "size": size}), _seeded(seed, size)))
        elif kind == "render":
            side = rng.randrange(16, 160)
            response = client.get(url, params={"seed": seed, "side": side})
            problem = _check(response, response.content)
            if problem is None:
                pixels = Image.open(io.BytesIO(response.content)).convert("RGB").tobytes()
                problem = None if pixels == _seeded(seed, side * side * 3) else "pixels differ"
            tally.add(kind, problem)
        elif kind in ("file", "stream"):
            size = rng.randrange(1, 3_000_000)
            tally.add(kind, _check(client.get(url, params={"seed": seed, "size": size}), _seeded(seed, size)))
        else:
            data = _seeded(seed, rng.randrange(1, 1_500_000))
            response = client.post(url, files={"file": ("upload.bin", data, "application/octet-stream")})
            expected = hashlib.sha256(data).hexdigest()
            ok = response.status_code == 200 and response.json() == {"sha256": expected}
            tally.add(kind, None if ok else f"status {response.status_code}: {response.text[:200]}")
    except (httpx2.HTTPError, OSError) as exc:
        tally.add(kind, f"{type(exc).__name__}: {exc}")


def load(bases: list[str], seconds: float, clients: int, seed: int) -> Tally:
    """``clients`` threads, each with its own keep-alive connection, until ``seconds`` are up."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    def client_loop(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        with httpx2.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                one_request(client, rng.choice(bases), rng, tally)

    threads = [threading.Thread(target=client_loop, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def leftovers(directory: Path, running: bool = True) -> list[str]:
    """What is in the server's temp directory: nothing a request made should stay. While the
    server runs, its metrics folder (``prometheus_client``'s multiprocess files) is its own;
    once it stopped, that must be gone too."""
    return sorted(name for name in os.listdir(directory) if not (running and name.startswith("dualserve-metrics-")))
