"""Benchmark dualserve against hand-written FastAPI, Starlette and Flask endpoints.

    .venv/bin/python -m bench.run [--rounds 5] [--duration 3] [--only png,render]

Every variant runs as its own server on 127.0.0.1, pinned to CPU 0; the load generator (wrk for
request rates, curl for downloads) is pinned to CPU 1. Scenarios run in alternating rounds
(A B C ... A B C ...), so slow phases of a noisy machine hit every variant alike, and each
dualserve frontend is compared with its hand-written twin *in the same round*: the reported ratio
is the median of the per-round ratios. Results go to bench/results/latest.json and stdout.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import workload

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_CPU, CLIENT_CPU = "0", "1"


@dataclass
class Variant:
    name: str
    command: list[str]
    prefix: str  # URL path before the scenario's own path
    paths: dict[str, str]  # scenario -> path
    headers: tuple[str, ...] = ()  # sent with every request ("Name: value")
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{self.paths[scenario]}"


SYNC = ("png", "render", "file", "stream")
ASYNC = ("apng", "astream", "slow")
#: Flask has no async generator response; its twins serve the two other async scenarios.
HAND = {name: f"/{name}" for name in (*SYNC, *ASYNC)}
HAND_FLASK = {name: path for name, path in HAND.items() if name != "astream"}
STARLETTE = {name: path for name, path in HAND.items() if name in ("png", "render", "file", "stream", "apng", "slow")}
PIPELINES = {name: f"/{name}/run" for name in (*SYNC, *ASYNC, "cached")}
# "cached" is the render pipeline with @cached(ttl=3600), against the twins' uncached render: what
# answering from the store saves (target: 20x or more).
for twin_paths in (HAND, HAND_FLASK, STARLETTE):
    twin_paths["cached"] = twin_paths["render"]


def variants() -> list[Variant]:
    uvicorn = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    gunicorn = [str(BIN / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "8", "--log-level", "warning"]
    gunicorn_whole = [*gunicorn[:3], "-k", "dualserve.servers.gunicorn.WholeRequestWorker", *gunicorn[5:]]
    # A store of the bench's own, never the working directory's .dualserve; the dualserve variants
    # share it, so the "cached" scenario is rendered once in all.
    state = tempfile.mkdtemp(prefix="dualserve-bench-state-")
    atexit.register(shutil.rmtree, state, True)
    dualserve = [
        str(BIN / "dualserve"),
        "run",
        "--pipelines-dir",
        str(ROOT / "bench" / "pipelines"),
        "--state-dir",
        state,
    ]
    return [
        Variant("hand FastAPI", [*uvicorn, "bench.apps.hand_fastapi:app", "--port", "{port}"], "", HAND),
        Variant("Starlette", [*uvicorn, "bench.apps.starlette_app:app", "--port", "{port}"], "", STARLETTE),
        Variant("dualserve FastAPI", [*dualserve, "--log-level", "warning", "--port", "{port}"], "", PIPELINES),
        Variant("a2wsgi Flask", [*uvicorn, "bench.apps.a2wsgi_flask:app", "--port", "{port}"], "/flask", HAND_FLASK),
        Variant(
            "dualserve Flask mounted", [*dualserve, "--log-level", "warning", "--port", "{port}"], "/flask", PIPELINES
        ),
        Variant(
            "hand Flask gunicorn", [*gunicorn, "-b", "127.0.0.1:{port}", "bench.apps.hand_flask:app"], "", HAND_FLASK
        ),
        # The hand Flask app on the worker dualserve runs under gunicorn: what reading each request
        # whole before a thread takes it (issue 18, slow clients) costs, apart from dualserve.
        Variant(
            "hand Flask gunicorn, whole-request worker",
            [*gunicorn_whole, "-b", "127.0.0.1:{port}", "bench.apps.hand_flask:app"],
            "",
            {name: HAND_FLASK[name] for name in ("png", "apng")},
        ),
        Variant(
            "dualserve Flask gunicorn",
            [*dualserve, "--server", "gunicorn", "--log-level", "warning", "--port", "{port}"],
            "",
            PIPELINES,
        ),
        # The edge on (issue 17): CORS, a key checked on every request, metrics (always on), each
        # request from an allowed origin with its key; against the same server with them off.
        Variant(
            "dualserve FastAPI, edge on",
            [*dualserve, *EDGE, "--log-level", "warning", "--port", "{port}"],
            "",
            {"png": PIPELINES["png"]},
            EDGE_HEADERS,
        ),
        Variant(
            "dualserve Flask gunicorn, edge on",
            [*dualserve, *EDGE, "--server", "gunicorn", "--log-level", "warning", "--port", "{port}"],
            "",
            {"png": PIPELINES["png"]},
            EDGE_HEADERS,
        ),
    ]


EDGE = ["--cors-origin", "https://app.example", "--api-key", "bench-key"]
EDGE_HEADERS = ("Origin: https://app.example", "X-API-Key: bench-key")


#: (dualserve variant, its twin, the scenarios the ratio is reported for)
#: Like with like: a sync wrapper against a sync ``def`` endpoint, an async one against ``async def``.
TWINS = [
    ("dualserve FastAPI", "hand FastAPI", ("png", "render", "stream", "apng", "astream", "slow", "cached")),
    ("dualserve FastAPI", "Starlette", ("png", "file", "apng", "slow")),
    ("dualserve Flask mounted", "a2wsgi Flask", ("png", "render", "file", "stream", "apng", "slow", "cached")),
    ("dualserve Flask gunicorn", "hand Flask gunicorn", ("png", "render", "file", "stream", "apng", "slow", "cached")),
    ("dualserve Flask gunicorn", "hand Flask gunicorn, whole-request worker", ("png", "apng")),
    ("dualserve FastAPI, edge on", "dualserve FastAPI", ("png",)),
    ("dualserve Flask gunicorn, edge on", "dualserve Flask gunicorn", ("png",)),
]


@dataclass
class Sample:
    value: float  # req/s for rates, GB/s for downloads
    rss_growth_mb: float | None = None


@dataclass
class Results:
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)

    def add(self, scenario: str, variant: str, sample: Sample) -> None:
        self.samples.setdefault(scenario, {}).setdefault(variant, []).append(sample)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def started(variant: Variant) -> Iterator[Variant]:
    variant.port = free_port()
    command = ["taskset", "-c", SERVER_CPU, *(part.replace("{port}", str(variant.port)) for part in variant.command)]
    # dualserve FastAPI and mounted Flask run the same command: one process each, so the two
    # never compete for a worker.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    variant.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            if variant.process.poll() is not None:
                raise RuntimeError(f"{variant.name} exited: {variant.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", variant.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{variant.name} did not start") from None
                time.sleep(0.1)
        yield variant
    finally:
        variant.process.send_signal(signal.SIGTERM)
        try:
            variant.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            variant.process.kill()
            variant.process.wait()


def wrk(url: str, duration: float, connections: int = 32, headers: tuple[str, ...] = ()) -> float:
    sent = [part for header in headers for part in ("-H", header)]
    output = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", *sent, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"errors from {url}:\n{output}")
    line = next(line for line in output.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def download(url: str, expected: int, pid: int) -> Sample:
    baseline = tree_rss_kb(pid)
    peak = baseline
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        output = subprocess.run(
            ["taskset", "-c", CLIENT_CPU, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    finally:
        done.set()
        watcher.join()
    size, seconds = output.split()
    if int(size) != expected:
        raise RuntimeError(f"{url} sent {size} bytes, not {expected}")
    return Sample(int(size) / float(seconds) / 1e9, (peak - baseline) / 1024)


SCENARIOS = {
    "png": ("100 KB PNG from memory", "req/s"),
    "render": ("512x512 Pillow render", "req/s"),
    "file": ("500 MB file download", "GB/s"),
    "stream": ("256 MB generator stream", "GB/s"),
    "apng": ("100 KB PNG from memory, async def", "req/s"),
    "astream": ("256 MB async generator stream", "GB/s"),
    "slow": ("slow upstream: awaits 100 ms, 64 connections", "req/s"),
    "cached": ("512x512 render, @cached, against the twin's render", "req/s"),
}
RATES = ("png", "render", "apng", "slow", "cached")


def measure(variant: Variant, scenario: str, duration: float) -> Sample:
    url = variant.url(scenario)
    assert variant.process is not None
    if scenario in RATES:
        return Sample(wrk(url, duration, 64 if scenario == "slow" else 32, variant.headers))
    expected = workload.FILE_SIZE if scenario == "file" else workload.STREAM_SIZE
    return download(url, expected, variant.process.pid)


def encoder_costs(repeat: int = 15) -> dict[str, dict[str, float]]:
    """Milliseconds and bytes for encoding the 512x512 render in each documented setting."""
    import io

    from dualserve.core.images import encode_image

    image = workload.render()
    settings = {
        "png level 1": {"format": "PNG", "compress_level": 1},
        "png level 6 (default)": {"format": "PNG", "compress_level": 6},
        "png level 9": {"format": "PNG", "compress_level": 9},
        "jpeg q90 (default)": {"format": "JPEG", "quality": 90},
        "webp q90 (default)": {"format": "WEBP", "quality": 90},
    }
    costs = {}
    for name, options in settings.items():
        times = []
        for _ in range(repeat):
            buffer = io.BytesIO()
            start = time.perf_counter()
            image.save(buffer, **options)  # type: ignore[arg-type]
            times.append((time.perf_counter() - start) * 1000)
        costs[name] = {"ms": statistics.median(times), "bytes": len(buffer.getvalue())}
    start = time.perf_counter()
    for _ in range(repeat):
        workload.render()
    costs["drawing only"] = {"ms": (time.perf_counter() - start) * 1000 / repeat, "bytes": 0}
    body, _ = encode_image(image)
    costs["dualserve default"] = {"ms": costs["png level 6 (default)"]["ms"], "bytes": len(body)}
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per request-rate sample")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument(
        "--out", default="latest.json", help="the report's file in bench/results (a partial run: give it a name)"
    )
    options = parser.parse_args()
    for tool in ("wrk", "curl", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench needs {tool}: apt-get install wrk curl util-linux", file=sys.stderr)
            return 2
    scenarios = [name for name in options.only.split(",") if name]
    if "file" in scenarios:
        workload.ensure_big_file()
    results = Results()
    with ExitStack() as stack:
        running = [stack.enter_context(started(variant)) for variant in variants()]
        for variant in running:  # warm up: imports, first request, page cache
            for scenario in scenarios:
                if scenario in RATES and scenario in variant.paths:
                    wrk(variant.url(scenario), 1, 4, variant.headers)
        for round_number in range(options.rounds):
            for scenario in scenarios:
                for variant in running:
                    if scenario not in variant.paths:
                        continue
                    sample = measure(variant, scenario, options.duration)
                    results.add(scenario, variant.name, sample)
                    print(f"round {round_number + 1} {scenario:7} {variant.name:26} {sample.value:10.2f}", flush=True)
    report = summarise(results, options)
    report["encoders"] = encoder_costs()
    out = ROOT / "bench" / "results" / options.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


def summarise(results: Results, options: argparse.Namespace) -> dict[str, object]:
    table: dict[str, dict[str, object]] = {}
    for scenario, by_variant in results.samples.items():
        table[scenario] = {}
        for variant, samples in by_variant.items():
            values = [s.value for s in samples]
            growth = [s.rss_growth_mb for s in samples if s.rss_growth_mb is not None]
            table[scenario][variant] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "peak_rss_growth_mb": max(growth) if growth else None,
            }
    ratios = []
    for ours, twin, scenarios in TWINS:
        for scenario in scenarios:
            if scenario not in results.samples:
                continue
            pairs = zip(results.samples[scenario][ours], results.samples[scenario][twin], strict=True)
            per_round = [a.value / b.value for a, b in pairs]
            ratios.append(
                {
                    "scenario": scenario,
                    "ours": ours,
                    "twin": twin,
                    "median": statistics.median(per_round),
                    "min": min(per_round),
                    "max": max(per_round),
                }
            )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": _cpu_model(),
        },
        "rounds": options.rounds,
        "duration": options.duration,
        "table": table,
        "ratios": ratios,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict[str, object]) -> str:
    lines = ["| scenario | variant | median | spread (min-max) | peak RSS growth |", "|---|---|---|---|---|"]
    table = report["table"]
    assert isinstance(table, dict)
    for scenario, by_variant in table.items():
        title, unit = SCENARIOS[scenario]
        for variant, row in by_variant.items():
            growth = row["peak_rss_growth_mb"]
            lines.append(
                f"| {title} | {variant} | {row['median']:,.2f} {unit} | {row['min']:,.2f}-{row['max']:,.2f} | "
                + (f"{growth:.1f} MB |" if growth is not None else "- |")
            )
    lines += [
        "",
        "| scenario | dualserve frontend | twin | ratio (median of rounds) | spread |",
        "|---|---|---|---|---|",
    ]
    ratios = report["ratios"]
    assert isinstance(ratios, list)
    for ratio in ratios:
        lines.append(
            f"| {SCENARIOS[ratio['scenario']][0]} | {ratio['ours']} | {ratio['twin']} | {ratio['median']:.2f}x | "
            f"{ratio['min']:.2f}-{ratio['max']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
