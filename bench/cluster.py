"""Scale-out (issue 16): jobs on Celery workers through Redis, one worker process against two, and
what the queue costs against the embedded runner.

    .venv/bin/python -m bench.cluster [--rounds 8] [--jobs 40] [--requests 200]   # about 5 minutes

Real processes on 127.0.0.1, in temporary directories: ``redis-server`` (no persistence), ``dualserve
run --broker ... --store ...`` (uvicorn; holds no model), ``dualserve worker`` (Celery, prefork) and,
for the second measurement, ``dualserve run`` without a broker. All serve bench/pipelines.

1. **Jobs a second, one worker process against two.** ``cpu_render`` takes about 70 ms of one core
   (a 512x512 drawing, two blur-and-sharpen passes, PNG). Two clusters run side by side on one
   Redis (a database each) for the whole run: an API process with ``dualserve worker
   --concurrency 1``, and another with ``--concurrency 2``. In each round, each is warmed with a few
   jobs, then 8 client threads submit ``--jobs`` jobs to it as fast as they can. The rate is the
   jobs over the time from the first submit to the last job's ``ended_at`` (the record's own clock,
   so the client's polling adds nothing). The CPU time each part spent meanwhile (API process,
   Redis, Celery's parent process, the pool, this client) is read from /proc. Beside them in the
   same round, the same renders in one and in two plain processes (a multiprocessing pool: no
   HTTP, Celery or store) give what this machine allows, the ceiling the workers' ratio is read
   against. Ratios are taken within each round, and again over the quiet rounds alone (other load
   under 0.25 cores in all four of the round's blocks).
2. **The queue's cost.** ``instant`` returns ``b"ok"`` at once, so a job of it costs only the job
   machinery. One at a time, ``POST /instant/jobs`` with ``Prefer: wait=10`` (answered 201 once the
   job has ended) on the cluster (API + ``dualserve worker --concurrency 1``) and on the embedded runner
   (``dualserve run``, one runner thread), request by request in turn; and a plain ``GET
   /instant/run`` on each (through the relay to the worker, against in process). Each job's record
   splits its round trip: created to started (the Celery publish, Redis, the worker taking the
   record), started to ended (the run and storing its result), ended to the client's answer (the
   API noticing the end).

Nothing is pinned: the workers need both cores, and the API process, Redis and this client share
them with the workers, as they would on a two-core machine that does everything. Every timed block
also records the CPU that processes outside the bench took meanwhile ("other load", in cores, from
/proc), so a round that shared the machine shows as such. Each figure is the median of the rounds'
figures, with their spread (smallest and largest). Results go to bench/results/cluster.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
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
from datetime import datetime
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import httpx2

from bench.jobs import percentile
from bench.run import BIN, ROOT, Variant, _cpu_model, free_port, started

PIPELINES = ROOT / "bench" / "pipelines"
#: How long any one wait of the bench may take before it gives up (a process that hangs, a lost job).
DEADLINE = 120.0
ENDED = ("succeeded", "failed", "canceled")
#: Client threads that submit measurement 1's jobs, each on its own keep-alive connection.
SUBMITTERS = 8


# --- the processes -------------------------------------------------------------------------------


@contextmanager
def redis_server(directory: Path) -> Iterator[tuple[str, int]]:
    """A ``redis-server`` on a free loopback port, without persistence: its URL (without a database
    number) and PID. Stopped by its PID."""
    found = shutil.which("redis-server")
    if found is None:
        raise SystemExit("bench.cluster needs redis-server (Debian: apt-get install redis-server)")
    port = free_port()
    command = [found, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
    with (directory / "redis.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {(directory / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}", process.pid
    finally:
        _stop(process)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _unpinned(command: list[str]) -> list[str]:
    # bench.run's started() runs a server under ``taskset -c 0`` (it pins servers to CPU 0 and its
    # load generator to CPU 1). Here nothing is pinned, so the command sets the affinity back to
    # every CPU this bench may use; taskset execs, so the PID started() stops is still the server's.
    cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    return ["taskset", "-c", cpus, *command]


def api_server(broker: str, store: Path, state: Path) -> Variant:
    """``dualserve run`` as a cluster's API process (uvicorn): jobs and ``/run`` go to the workers."""
    command = [str(BIN / "dualserve"), "run", "--pipelines-dir", str(PIPELINES), "--server", "uvicorn"]
    command += ["--broker", broker, "--store", str(store), "--state-dir", str(state)]
    command += ["--log-level", "warning", "--port", "{port}"]
    return Variant("cluster API", _unpinned(command), "", {})


def embedded_server(state: Path) -> Variant:
    """``dualserve run`` without a broker: jobs run in one thread of the server process."""
    command = [str(BIN / "dualserve"), "run", "--pipelines-dir", str(PIPELINES), "--server", "uvicorn"]
    command += ["--state-dir", str(state), "--log-level", "warning", "--port", "{port}"]
    return Variant("embedded", _unpinned(command), "", {})


@contextmanager
def celery_worker(broker: str, store: Path, state: Path, concurrency: int) -> Iterator[int]:
    """``dualserve worker --concurrency N``, its pool's processes started: its PID. Stopped with its group."""
    command = [str(BIN / "dualserve"), "worker", "--pipelines-dir", str(PIPELINES), "--broker", broker]
    command += ["--store", str(store), "--state-dir", str(state), "--concurrency", str(concurrency)]
    # Celery's default log level as ``dualserve worker`` has it (info: a line per task received and
    # done), because that is what a deployment runs; the log is also how readiness shows.
    log_path = state / f"worker-{concurrency}.log"
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the pipelines import bench.workload
    with log_path.open("wb") as log:
        # A session of its own: the worker and its pool processes are stopped together, by the group.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text(errors="replace") or len(_children(process.pid)) < concurrency:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dualserve worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield process.pid
    finally:
        _stop_group(process)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's group (Celery's warm shutdown), SIGKILL if it lingers or left a child."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


# --- the client --------------------------------------------------------------------------------------


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()  # "...T12:00:00.123Z": milliseconds, UTC


def submit_all(clients: list[httpx2.Client], pipeline: str, count: int) -> list[str]:
    """Submit ``count`` jobs from one thread per client, as fast as they go; their ids."""
    ids: list[str] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def submit(client: httpx2.Client, share: int) -> None:
        try:
            for _ in range(share):
                answer = client.post(f"/{pipeline}/jobs", json={})
                if answer.status_code != 202:
                    raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:200]}")
                with lock:
                    ids.append(answer.json()["id"])
        except BaseException as exc:  # re-raised in the calling thread
            failures.append(exc)

    threads = len(clients)
    shares = [count // threads + (1 if index < count % threads else 0) for index in range(threads)]
    workers = [threading.Thread(target=submit, args=pair) for pair in zip(clients, shares, strict=True) if pair[1]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return ids


def wait_all(client: httpx2.Client, ids: list[str]) -> list[dict[str, Any]]:
    """Every job's document once all have ended. Only the oldest job not seen ended is asked for,
    every 50 ms: the API process answers a few GETs a second, not one per job per sweep, so the
    client's polling takes next to nothing from the workers' cores."""
    documents = []
    deadline = time.monotonic() + DEADLINE
    for job_id in ids:
        while True:
            document: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
            if document["status"] in ENDED:
                if document["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} ended {document['status']}: {document['error']}")
                documents.append(document)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not end in {DEADLINE:g} s: {document}")
            time.sleep(0.05)
    return documents


@dataclass
class Cluster:
    """One cluster of measurement 1: where to submit, and the PIDs whose CPU time is counted."""

    base: str
    api: int
    redis: int
    worker: int
    #: The client's connections, made once: an httpx client costs 30-50 ms of CPU to make (loading
    #: the TLS certificates), which would otherwise be taken from the workers' cores every round.
    clients: list[httpx2.Client] = field(init=False)

    def __post_init__(self) -> None:
        self.clients = [httpx2.Client(base_url=self.base, timeout=30) for _ in range(SUBMITTERS)]

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def cpu_ticks(self) -> dict[str, int]:
        """CPU time so far of each part (clock ticks): what shares the two cores with the pool."""
        parent = _process_ticks(self.worker)
        return {
            "API process": _tree_ticks(self.api),
            "Redis": _process_ticks(self.redis),
            "Celery parent": parent,
            "pool processes": _tree_ticks(self.worker) - parent,
            "this client": _process_ticks(os.getpid()),
        }


def throughput(cluster: Cluster, count: int, concurrency: int) -> dict[str, Any]:
    """Jobs a second for ``count`` cpu_render jobs submitted at once; their median run time; the
    CPU each part of the cluster spent per job meanwhile."""
    client = cluster.clients[0]
    # Warm-up: each pool process runs a job or two (first-call costs, the store's folders).
    wait_all(client, submit_all(cluster.clients, "cpu_render", 2 * concurrency))
    before = cluster.cpu_ticks()
    with OtherLoad() as other:
        first_submit = time.time()
        ids = submit_all(cluster.clients, "cpu_render", count)
        submitted = time.time() - first_submit
        documents = wait_all(client, ids)
    after = cluster.cpu_ticks()
    last_end = max(_timestamp(document["ended_at"]) for document in documents)
    runs = [_timestamp(d["ended_at"]) - _timestamp(d["started_at"]) for d in documents]
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    return {
        "jobs_per_second": count / (last_end - first_submit),
        "seconds": last_end - first_submit,
        "submit_seconds": submitted,
        "median_run_ms": statistics.median(runs) * 1000,
        "other_load_cores": other.cores,
        "cpu_ms_per_job": {part: (after[part] - before[part]) * tick_ms / count for part in before},
    }


def _render_once(_: int) -> float:
    """One cpu_render call in a plain process; its seconds."""
    from bench.pipelines.cpu_render.pipeline_wrapper import PipelineWrapper

    start = time.perf_counter()
    PipelineWrapper().run_api()
    return time.perf_counter() - start


def ceiling(pool: Pool, count: int, processes: int) -> dict[str, float]:
    """The same renders in a pool of ``processes`` plain processes (no HTTP, no Celery, no store):
    what this machine gives for one process against two, measured beside the workers every round."""
    pool.map(_render_once, range(2 * processes), chunksize=1)  # as the workers are warmed
    with OtherLoad() as other:
        start = time.perf_counter()
        runs = pool.map(_render_once, range(count), chunksize=1)  # one job at a time, as Celery hands them
        seconds = time.perf_counter() - start
    return {
        "jobs_per_second": count / seconds,
        "seconds": seconds,
        "median_run_ms": statistics.median(runs) * 1000,
        "other_load_cores": other.cores,
    }


class OtherLoad:
    """CPU time the machine spent outside this bench's process tree while the block ran, in cores
    (other processes, kernel threads, the hypervisor's steal): the noise a round had to share with.
    From /proc/stat's busy time minus every process of the tree's own (/proc/PID/stat)."""

    cores = 0.0

    def __enter__(self) -> OtherLoad:
        self._start = (time.monotonic(), _machine_ticks(), _tree_ticks(os.getpid()))
        return self

    def __exit__(self, *_: object) -> None:
        began, machine, ours = self._start
        seconds = time.monotonic() - began
        other = (_machine_ticks() - machine) - (_tree_ticks(os.getpid()) - ours)
        self.cores = max(0.0, other / os.sysconf("SC_CLK_TCK") / seconds)


def _machine_ticks() -> int:
    # user, nice, system and steal: irq and softirq are left out of both sides (loopback traffic's
    # softirq time is the bench's own but is not counted in its processes' times).
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[0] + fields[1] + fields[2] + fields[7]


def _process_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime and stime, all the process's threads


def _tree_ticks(pid: int) -> int:
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += _process_ticks(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Trips:
    """One round's samples for one side (cluster or embedded), in milliseconds."""

    job: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)  # created_at -> started_at
    running: list[float] = field(default_factory=list)  # started_at -> ended_at
    noticed: list[float] = field(default_factory=list)  # ended_at -> the client has the 201


def one_trip(client: httpx2.Client, trips: Trips) -> None:
    start = time.perf_counter()
    answer = client.post("/instant/jobs", json={}, headers={"prefer": "wait=10"})
    arrived = time.time()
    trips.job.append((time.perf_counter() - start) * 1000)
    if answer.status_code != 201:
        raise RuntimeError(f"Prefer: wait answered {answer.status_code}: {answer.text[:200]}")
    document = answer.json()
    created, started_at, ended = (_timestamp(document[key]) for key in ("created_at", "started_at", "ended_at"))
    trips.queued.append((started_at - created) * 1000)
    trips.running.append((ended - started_at) * 1000)
    trips.noticed.append((arrived - ended) * 1000)
    start = time.perf_counter()
    run = client.get("/instant/run")
    trips.run.append((time.perf_counter() - start) * 1000)
    if run.status_code != 200 or run.content != b"ok":
        raise RuntimeError(f"/instant/run answered {run.status_code}: {run.text[:200]}")


def round_trips(cluster: str, embedded: str, count: int, cluster_first: bool) -> tuple[dict[str, Trips], float]:
    """``count`` round trips on each side, request by request in turn, so a slow moment of the
    machine hits both sides alike; and the other load meanwhile, in cores."""
    sides = {"cluster": Trips(), "embedded": Trips()}
    order = ("cluster", "embedded") if cluster_first else ("embedded", "cluster")
    with (
        httpx2.Client(base_url=cluster, timeout=30) as on_cluster,
        httpx2.Client(base_url=embedded, timeout=30) as here,
        OtherLoad() as other,
    ):
        clients = {"cluster": on_cluster, "embedded": here}
        for _ in range(count):
            for side in order:
                one_trip(clients[side], sides[side])
    return sides, other.cores


# --- the summary -----------------------------------------------------------------------------------

#: Measurement 1's configurations: Celery workers, and plain processes (the machine's ceiling).
SCALING = (("workers", 1), ("workers", 2), ("processes", 1), ("processes", 2))
#: One round of measurement 1: each configuration's figures.
Round = dict[tuple[str, int], dict[str, Any]]
#: A round whose every block had less other load than this (in cores) counts as quiet.
QUIET = 0.25


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise_throughput(rounds: list[Round]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "per_round": [{f"{kind} {n}": values for (kind, n), values in one.items()} for one in rounds]
    }
    for kind, n in SCALING:
        summary[f"{kind} {n}"] = {
            name: spread([one[kind, n][name] for one in rounds])
            for name in ("jobs_per_second", "median_run_ms", "other_load_cores")
        }
        if kind == "workers":
            parts = rounds[0][kind, n]["cpu_ms_per_job"]
            summary[f"{kind} {n}"]["cpu_ms_per_job"] = {
                part: spread([one[kind, n]["cpu_ms_per_job"][part] for one in rounds]) for part in parts
            }
    summary.update(_ratios(rounds))
    # The rounds nothing else disturbed: on this shared machine, another test run can take a core
    # for a few seconds, which wrecks the ratio of the round it falls in (and only that one).
    quiet = [one for one in rounds if max(values["other_load_cores"] for values in one.values()) < QUIET]
    summary["quiet rounds"] = {"count": len(quiet), **(_ratios(quiet) if quiet else {})}
    return summary


def _ratios(rounds: list[Round]) -> dict[str, Any]:
    def ratio(one: Round, kind: str) -> float:
        return float(one[kind, 2]["jobs_per_second"] / one[kind, 1]["jobs_per_second"])

    return {
        "workers ratio 2/1": spread([ratio(one, "workers") for one in rounds]),
        "processes ratio 2/1": spread([ratio(one, "processes") for one in rounds]),
        # How close two workers come to what two plain processes get in the same round.
        "workers ratio / processes ratio": spread([ratio(one, "workers") / ratio(one, "processes") for one in rounds]),
    }


def summarise_trips(rounds: list[tuple[dict[str, Trips], float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for side in ("cluster", "embedded"):
        summary[side] = {
            "job median_ms": spread([statistics.median(one[side].job) for one, _ in rounds]),
            "job p99_ms": spread([percentile(one[side].job, 0.99) for one, _ in rounds]),
            # Jobs answered only after a full POLL (0.1 s) of the waiting request: see README.
            "job share over 50 ms": spread(
                [sum(ms > 50 for ms in one[side].job) / len(one[side].job) for one, _ in rounds]
            ),
            "run median_ms": spread([statistics.median(one[side].run) for one, _ in rounds]),
            "run p99_ms": spread([percentile(one[side].run, 0.99) for one, _ in rounds]),
            "created to started, median_ms": spread([statistics.median(one[side].queued) for one, _ in rounds]),
            "started to ended, median_ms": spread([statistics.median(one[side].running) for one, _ in rounds]),
            "ended to answered, median_ms": spread([statistics.median(one[side].noticed) for one, _ in rounds]),
        }
    for name in ("job", "run"):
        summary[f"{name} ratio cluster/embedded"] = spread(
            [
                statistics.median(getattr(one["cluster"], name)) / statistics.median(getattr(one["embedded"], name))
                for one, _ in rounds
            ]
        )
    summary["other_load_cores"] = spread([cores for _, cores in rounds])
    return summary


def _range(values: dict[str, float], unit: str = "", digits: int = 1) -> str:
    return f"{values['median']:.{digits}f}{unit} ({values['min']:.{digits}f}-{values['max']:.{digits}f})"


def table(report: dict[str, Any]) -> str:
    scaling, cost = report["cpu_render"], report["queue_cost"]
    lines = [
        f"cpu_render, {report['jobs']} jobs at once, {report['rounds']} rounds: median (min-max) of the rounds",
        "| | jobs/s | one run | other load (cores) |",
        "|---|---|---|---|",
    ]
    for kind, n in SCALING:
        row = scaling[f"{kind} {n}"]
        name = f"dualserve worker --concurrency {n}" if kind == "workers" else f"{n} plain process(es)"
        rate, run, other = row["jobs_per_second"], row["median_run_ms"], row["other_load_cores"]
        lines.append(f"| {name} | {_range(rate)} | {_range(run, ' ms')} | {_range(other, '', 2)} |")
    for n in (1, 2):
        parts = scaling[f"workers {n}"]["cpu_ms_per_job"]
        lines.append(
            f"CPU per job, worker --concurrency {n} (ms, median of rounds): "
            + ", ".join(f"{part} {values['median']:.1f}" for part, values in parts.items())
        )
    quiet = scaling["quiet rounds"]
    for name, ratios in (("all rounds", scaling), (f"{quiet['count']} quiet rounds", quiet)):
        if "workers ratio 2/1" in ratios:
            lines.append(
                f"{name}: workers 2/1 {_range(ratios['workers ratio 2/1'], 'x', 2)}; "
                f"plain processes 2/1 {_range(ratios['processes ratio 2/1'], 'x', 2)}; "
                f"workers' ratio / processes' ratio {_range(ratios['workers ratio / processes ratio'], '', 2)}"
            )
    lines += [
        "",
        f"instant jobs with Prefer: wait=10, {report['requests']} a round each, one at a time: median (min-max) "
        f"of the rounds; other load {_range(cost['other_load_cores'], ' cores', 2)}",
        "| | cluster (Celery + Redis) | embedded | ratio |",
        "|---|---|---|---|",
    ]
    for name, shown in (("job", "job round trip"), ("run", "plain /run")):
        for stat in ("median_ms", "p99_ms"):
            ratio = _range(cost[f"{name} ratio cluster/embedded"], "x", 2) if stat == "median_ms" else ""
            cluster, embedded = cost["cluster"][f"{name} {stat}"], cost["embedded"][f"{name} {stat}"]
            lines.append(f"| {shown}, {stat[:-3]} | {_range(cluster, ' ms')} | {_range(embedded, ' ms')} | {ratio} |")
    share = "job share over 50 ms"
    lines.append(f"| {share} | {_range(cost['cluster'][share], '', 3)} | {_range(cost['embedded'][share], '', 3)} | |")
    for key in ("created to started", "started to ended", "ended to answered"):
        cluster, embedded = cost["cluster"][f"{key}, median_ms"], cost["embedded"][f"{key}, median_ms"]
        lines.append(f"| job: {key}, median | {_range(cluster, ' ms')} | {_range(embedded, ' ms')} | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=40, help="cpu_render jobs per configuration and round")
    parser.add_argument("--requests", type=int, default=200, help="instant round trips per side and round")
    options = parser.parse_args()
    # A SIGTERM to the bench unwinds the with-blocks below, so it stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    load_before = os.getloadavg()
    scaling: list[Round] = []
    trips: list[tuple[dict[str, Trips], float]] = []
    with tempfile.TemporaryDirectory(prefix="dualserve-bench-cluster-") as temporary, ExitStack() as stack:
        work = Path(temporary)
        (work / "redis").mkdir()
        redis, redis_pid = stack.enter_context(redis_server(work / "redis"))
        # Two clusters side by side, one Redis database each: an API process and a worker of one
        # process, and an API process and a worker of two. All stay up for the whole run, so the
        # rounds alternate without restarts; an idle worker only waits on Redis.
        clusters: dict[int, Cluster] = {}
        for n in (1, 2):
            broker, store = f"{redis}/{n - 1}", work / f"store-{n}"
            worker = stack.enter_context(celery_worker(broker, store, work / f"worker-{n}", n))
            api = stack.enter_context(started(api_server(broker, store, work / f"api-{n}")))
            assert api.process is not None
            clusters[n] = Cluster(f"http://127.0.0.1:{api.port}", api.process.pid, redis_pid, worker)
            stack.callback(clusters[n].close)
        # spawn, not fork: this process runs client threads; a fork would copy their locks.
        pools = {n: stack.enter_context(multiprocessing.get_context("spawn").Pool(n)) for n in (1, 2)}
        for number in range(options.rounds):
            measured: Round = {}
            # The order turns round every other round: no configuration always runs first.
            for kind, n in SCALING if number % 2 == 0 else SCALING[::-1]:
                if kind == "workers":
                    measured[kind, n] = throughput(clusters[n], options.jobs, n)
                else:
                    measured[kind, n] = ceiling(pools[n], options.jobs, n)
                values = measured[kind, n]
                print(
                    f"round {number + 1} cpu_render, {kind} {n}: {values['jobs_per_second']:.2f} jobs/s, "
                    f"run {values['median_run_ms']:.1f} ms, other load {values['other_load_cores']:.2f} cores",
                    flush=True,
                )
            scaling.append(measured)
        for pool in pools.values():
            pool.terminate()  # idle now; the next measurement is timed
        # The queue's cost on the first cluster (API + a worker of one process) against the embedded runner.
        embedded = stack.enter_context(started(embedded_server(work / "embedded")))
        local = f"http://127.0.0.1:{embedded.port}"
        round_trips(clusters[1].base, local, 20, True)  # warm-up: first calls, connections, the store's folders
        for number in range(options.rounds):
            sides, other = round_trips(clusters[1].base, local, options.requests, number % 2 == 0)
            trips.append((sides, other))
            print(
                f"round {number + 1} instant job: cluster {statistics.median(sides['cluster'].job):.2f} ms, "
                f"embedded {statistics.median(sides['embedded'].job):.2f} ms, other load {other:.2f} cores",
                flush=True,
            )
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": _cpu_model(), "python": sys.version.split()[0]},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rounds": options.rounds,
        "jobs": options.jobs,
        "requests": options.requests,
        "seconds": time.monotonic() - began,
        "cpu_render": summarise_throughput(scaling),
        "queue_cost": summarise_trips(trips),
    }
    out = ROOT / "bench" / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"took {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
