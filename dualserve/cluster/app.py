"""The Celery app the workers run, importable for teams that start Celery themselves::

    DUALSERVE_BROKER=redis://HOST:6379/0 DUALSERVE_STORE=/shared/results \\
    DUALSERVE_PIPELINES_DIR=pipelines celery -A dualserve.cluster.app worker --concurrency 2

which is what ``dualserve worker`` does. Two tasks: ``dualserve.run_job`` runs a recorded job
(the API process queued its id) and ``dualserve.answer`` answers a ``/run`` call through
:mod:`.relay`. Each worker process loads every pipeline and runs its ``setup()`` once, when the
process starts (``worker_process_init``), never in the parent that forks them: a GPU context
does not survive a fork.

The settings fit long generations: a task is acknowledged when it ends (``acks_late``), so a
worker killed mid-job has its job delivered again; a worker takes one task at a time
(``prefetch_multiplier=1``); Redis hands an unacknowledged task to another worker only after
:data:`~.connection.VISIBILITY_TIMEOUT`. Celery keeps no results: dualserve's own job record does,
so an unknown id is a 404, never Celery's eternal ``PENDING``.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from pathlib import Path
from typing import Any, cast

from celery import Celery
from celery.signals import worker_process_init
from werkzeug.datastructures import Headers

from ..core.reply import for_method
from ..core.request import Request
from ..core.routes import Route
from ..serving import config
from ..serving.jobs import ATTEMPTS, HEARTBEAT, STALE_AFTER, Jobs
from ..serving.pipelines import Registry
from ..serving.service import Service
from ..store.sqlite import new_owner, owner_alive
from .connection import ANSWER, PREFIX, QUEUE, RUN_JOB, VISIBILITY_TIMEOUT, Cluster
from .relay import Sender

__all__ = ["app", "make_celery", "worker"]

logger = logging.getLogger("dualserve")


def make_celery(broker: str) -> Celery:
    """A Celery app on ``broker`` with dualserve's two tasks and settings."""
    celery = Celery("dualserve", broker=broker, set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a worker process that died: its task goes back at once
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    celery.task(name=RUN_JOB, ignore_result=True)(run_job)
    celery.task(name=ANSWER, ignore_result=True)(answer)
    return celery


class Worker:
    """One worker process: the pipelines, set up, and the service that runs them."""

    def __init__(self) -> None:
        settings: dict[str, Any] = {key: value for key, value in config.settings().items() if value is not None}
        for key in ("broker", "store", "s3_redirect"):
            settings.pop(key, None)  # the cluster's, below
        state_dir = Path(settings.get("state_dir") or config.default_state_dir()).resolve()
        cluster = Cluster(config.broker(), config.store(), state_dir, role="worker")
        registry = Registry.from_directory(config.pipelines_dir())
        self.service = Service(registry, cluster=cluster, **settings)
        self.owner = new_owner()

    @property
    def jobs(self) -> Jobs:
        return self.service.jobs


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    """This process's worker, made on first use (prefork children make theirs when they start)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = Worker()
        return _worker


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _set_up(**_: Any) -> None:
    worker()  # every pipeline's setup() now, before the first task, in this process


def run_job(job_id: str) -> None:
    """Run the recorded job ``job_id``: taken here unless it ended, was canceled, or another
    worker that is alive runs it; a delivery after a crash takes it over (or fails it)."""
    state = worker()
    records = state.jobs.records
    record = records.take(job_id, state.owner, STALE_AFTER, ATTEMPTS, owner_alive)
    if record is None:
        return
    stop = threading.Event()

    def beat() -> None:  # heartbeats: another machine's worker can tell this one is alive
        while not stop.wait(HEARTBEAT):
            try:
                records.heartbeat(state.owner, [job_id])
            except Exception:
                logger.warning("Could not record job %s's heartbeat", job_id, exc_info=True)

    threading.Thread(target=beat, name=f"dualserve-heartbeat-{job_id}", daemon=True).start()
    try:
        state.jobs.run(record, state.owner)
    finally:
        stop.set()


def answer(call_id: str, message: dict[str, Any]) -> None:
    """Answer a ``/run`` call that an API process relays (see :mod:`.relay`)."""
    state = worker()
    cluster = state.service.cluster
    assert cluster is not None
    sender = Sender(cluster.redis, PREFIX, call_id)
    if sender.answered_before():
        sender.fail("The worker answering this call stopped midway; try again.")
        return
    sender.keep_alive()
    try:
        if "body_key" in message:
            body = cast(bytes, cluster.redis.getdel(message["body_key"]) or b"")  # no decode_responses
        else:
            body = base64.b64decode(message["body"])
        request = Request(
            message["method"],
            Headers([(name, value) for name, value in message["headers"]]),
            message["query"].encode("latin-1"),
            body,
            framework="job",
            path_params=tuple((name, value) for name, value in message["path_params"]),
        )
        route = None
        if message["route"] is not None:
            methods = message["route"]["methods"]
            route = Route("/", "run", methods=tuple(methods) if methods else None, json=message["route"]["json"])
        reply = state.service.run_here(message["pipeline"], request, route)
    except Exception:
        # run_here answers a failing pipeline with its JSON error; this is the worker's own failure.
        logger.exception("The worker could not answer call %s", call_id)
        sender.fail("The worker could not answer this call; try again.")
        return
    except BaseException:
        sender.finish()
        raise
    sender.send(for_method(reply, request.method))


#: The app ``celery -A dualserve.cluster.app`` finds, configured by the environment.
app = make_celery(os.environ.get(config.BROKER_ENV) or "redis://127.0.0.1:6379/0")
