"""Prometheus metrics: what ``GET /metrics`` answers, the same names on every frontend. No web framework.

The request path records through two functions, :func:`observe_request` (once a request's last
byte is sent) and :func:`count_cache` (each cached ``/run``), and ``/metrics`` answers
:func:`render`. The names::

    dualserve_requests_total{pipeline, route, method, status}     counter
    dualserve_request_duration_seconds{pipeline, route}           histogram, arrival to last byte
    dualserve_response_bytes_total{pipeline, route}               counter, body bytes sent
    dualserve_cache_requests_total{pipeline, outcome}             counter: hit, miss, coalesced
    dualserve_jobs{status}                                        gauge, read at each scrape
    dualserve_job_queue_depth                                     gauge, the queued jobs

Label values stay bounded, as Prometheus needs (each value is a time series kept forever): the
caller passes only the names of loaded pipelines (``""`` for a route of no pipeline) and the
endpoint names of :data:`ROUTES`, never a path or anything else a client wrote; the method is
cut down here to the HTTP methods (:func:`bounded_method`), the status is a status code.

Jobs are not counted here: a job ends in whichever process ran it (a Celery worker, say), so the
job gauges are read from the job records at each scrape (``render(job_counts)``), once, by the
process that answers it.

Several processes (``--workers N``): each worker counts in its own files in the folder
``PROMETHEUS_MULTIPROC_DIR`` names, and a scrape, answered by any one of them, sums every file
(prometheus_client's multiprocess mode). ``dualserve run`` prepares that folder with
:func:`prepare_multiprocess` before its server starts a worker; nobody else needs to. The mode is
chosen when a metric is made, from the environment: so the metrics are made on first use, never
at import, and :func:`prepare_multiprocess` must run before a process's first observation. One
process (tests, ``flask run``, an app built in Python) counts in the default registry, and
:func:`render` answers the same text.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

__all__ = [
    "BUCKETS",
    "CACHE_OUTCOMES",
    "JOB_STATUSES",
    "MULTIPROC_ENV",
    "ROUTES",
    "bounded_method",
    "child_exit",
    "count_cache",
    "observe_request",
    "prepare_multiprocess",
    "render",
]

logger = logging.getLogger("dualserve")

#: The environment variable prometheus_client reads for its multiprocess folder.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The ``route`` label's values: the endpoints, never the path a client asked for.
ROUTES = ("run", "submit", "job", "job_result", "job_events", "status", "openapi", "page", "home", "metrics")
#: The ``outcome`` label's values of ``dualserve_cache_requests_total``.
CACHE_OUTCOMES = ("hit", "miss", "coalesced")
#: The ``status`` label's values of ``dualserve_jobs``: each is answered at every scrape, 0 if none.
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
#: Seconds to the last byte: a JSON answer in milliseconds up to a video streamed for minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# The methods of HTTP's semantic conventions (OpenTelemetry's too); any other becomes "_OTHER", so a
# client inventing methods cannot make series without end.
_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def bounded_method(method: str) -> str:
    """``method`` if it is one of HTTP's, else ``"_OTHER"``: a label value from a bounded set."""
    return method if method in _METHODS else "_OTHER"


class _Instruments(NamedTuple):
    requests: Counter
    duration: Histogram
    sent: Counter
    cache: Counter


_instruments: _Instruments | None = None
_lock = threading.Lock()


def _multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


#: Each label set's children, for :func:`observe_request`.
_children: dict[tuple[str, str, str, int], tuple[Any, Any, Any]] = {}


def _made() -> _Instruments:
    """The metrics of this process, made on first use (see the module docstring for why not at import)."""
    global _instruments
    with _lock:
        if _instruments is not None:  # another thread made them while this one waited
            return _instruments
        from prometheus_client import Counter, Histogram, values

        # prometheus_client chooses a process's value class once, when it is imported: if anything
        # imported it before the folder was set (a library, this process's parent before a fork),
        # its choice is stale. Metrics read ``values.ValueClass`` as they are made, so choosing
        # again here, before ours are made, puts them in the files the scrape sums.
        if _multiprocess_dir() and not getattr(values.ValueClass, "_multiprocess", False):
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        _instruments = _Instruments(
            requests=Counter(
                "dualserve_requests_total",
                "Requests answered, by pipeline, route, method and status.",
                ["pipeline", "route", "method", "status"],
            ),
            duration=Histogram(
                "dualserve_request_duration_seconds",
                "Seconds from a request's arrival to the last byte of its answer.",
                ["pipeline", "route"],
                buckets=BUCKETS,
            ),
            sent=Counter(
                "dualserve_response_bytes_total", "Body bytes sent, by pipeline and route.", ["pipeline", "route"]
            ),
            cache=Counter(
                "dualserve_cache_requests_total",
                "Cached runs by outcome: hit (stored answer), miss (ran), coalesced (waited for another run).",
                ["pipeline", "outcome"],
            ),
        )
        return _instruments


def observe_request(pipeline: str, route: str, method: str, status: int, seconds: float, sent: int) -> None:
    """Record one answered request, once its last byte is sent (or the client went away).

    :param pipeline: the pipeline's name, one that is loaded; ``""`` for a route of no pipeline.
    :param route: the endpoint, one of :data:`ROUTES`.
    :param method: the request's method; any but HTTP's own is counted as ``"_OTHER"``.
    :param status: the status code sent.
    :param seconds: from the request's arrival to its last byte (the caller's monotonic clock).
    :param sent: body bytes sent.
    """
    key = (pipeline, route, method, status)
    children = _children.get(key)
    if children is None:
        # A metric's ``labels()`` hashes and locks on every call: its children are kept here by
        # their labels (bounded: known pipelines, routes, methods and statuses).
        instruments = _instruments or _made()
        children = _children[key] = (
            instruments.requests.labels(pipeline, route, bounded_method(method), str(status)),
            instruments.duration.labels(pipeline, route),
            instruments.sent.labels(pipeline, route),
        )
    requests, duration, sent_bytes = children
    requests.inc()
    duration.observe(max(seconds, 0.0))  # a clock that stepped back must not lower the sum
    sent_bytes.inc(max(sent, 0))


def count_cache(pipeline: str, outcome: str) -> None:
    """Count one cached run of ``pipeline`` (a loaded pipeline's name) by ``outcome``, one of
    :data:`CACHE_OUTCOMES`."""
    (_instruments or _made()).cache.labels(pipeline, outcome).inc()


class _JobCollector:
    """``dualserve_jobs`` and ``dualserve_job_queue_depth``, read from the job records at each scrape."""

    def __init__(self, job_counts: Callable[[], Mapping[str, int]]) -> None:
        self._job_counts = job_counts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            counts = self._job_counts()
        except Exception:
            # The job records may be out of reach (a Redis down, a locked file): the request
            # metrics still answer, and the job gauges are absent rather than a made-up 0.
            logger.warning("Metrics: the job counts could not be read; dualserve_jobs is left out", exc_info=True)
            return
        jobs = GaugeMetricFamily("dualserve_jobs", "Jobs by status, read from the job records.", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "dualserve_job_queue_depth", "Jobs waiting for a worker (the queued ones).", value=counts.get("queued", 0)
        )


class _Scrape:
    """Several collectors as one, for the one exposition of a scrape."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render(job_counts: Callable[[], Mapping[str, int]] | None) -> tuple[bytes, str]:
    """The exposition text of ``GET /metrics`` and its content type.

    :param job_counts: answers the number of jobs by status (``{"queued": 3, ...}``), called once
        per scrape; ``None`` when the service keeps no jobs. If it raises, the job gauges are left
        out and a warning is logged: the rest still answers.
    """
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.multiprocess import MultiProcessCollector

    _instruments or _made()  # the families are named even before the first request
    collectors: list[Collector] = []
    path = _multiprocess_dir()
    # Every worker's files, summed; in one process, its own registry (which holds ours).
    collectors.append(MultiProcessCollector(None, path=path) if path else REGISTRY)  # type: ignore[no-untyped-call]
    if job_counts is not None:
        collectors.append(_JobCollector(job_counts))
    return generate_latest(_Scrape(collectors)), CONTENT_TYPE_LATEST


def prepare_multiprocess(workers: int) -> None:
    """Prepare the folder the worker processes count in; ``dualserve run`` calls it before its
    server starts, and before this process records anything.

    If ``PROMETHEUS_MULTIPROC_DIR`` is set (by the user), its ``*.db`` files of an earlier run are
    removed, as prometheus_client requires a clean folder at start. Otherwise, with more than one
    worker, a fresh temporary folder is made, named in the environment (which the workers inherit)
    and removed when this process exits. With one worker, nothing: that process sees every request,
    and its own registry is the whole count.

    :param workers: how many worker processes the server starts.
    """
    path = _multiprocess_dir()
    if path is not None:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            try:
                os.remove(stale)
            except FileNotFoundError:
                pass
        return
    if workers <= 1:
        return
    path = tempfile.mkdtemp(prefix="dualserve-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(_remove, path, os.getpid())


def _remove(path: str, owner: int) -> None:
    # gunicorn's workers are forks of this process and inherit this handler: a worker that exits
    # (a restart) must not take the folder its siblings still count in.
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def child_exit(pid: int) -> None:
    """Tell the multiprocess count that the worker ``pid`` has exited: gunicorn's ``child_exit`` hook.

    Its counters and histograms stay in the sum, as totals should (a counter never goes down, or
    Prometheus reads a reset); only live gauges (none today) drop its file. uvicorn's
    ``--workers`` has no such hook: a dead worker's files simply stay, which for totals is right.
    Nothing in one process.
    """
    if _multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
