"""The job runner of an API process in a cluster: a queued job goes to Celery, by its id.

The second implementation of :class:`~dualserve.serving.jobs.JobRunner`, beside the embedded one.
It runs nothing: the workers take the job's record from Redis and its request from the store
(:func:`dualserve.cluster.app.run_job`). What it keeps doing here: sending again a job whose worker
went silent, and the store's housekeeping (expired records dropped, their blobs deleted, the store
kept within its bound), once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..serving.jobs import ATTEMPTS, STALE_AFTER
from ..store.sqlite import owner_alive
from .connection import RUN_JOB, Cluster

if TYPE_CHECKING:
    from ..serving.jobs import Jobs

__all__ = ["CeleryRunner"]

logger = logging.getLogger("dualserve")

#: Seconds between two collections of expired jobs, and between two looks for interrupted ones.
COLLECT_EVERY = 60.0
RECOVER_EVERY = 5.0


class CeleryRunner:
    def __init__(self, jobs: Jobs, cluster: Cluster) -> None:
        self.jobs = jobs
        self.cluster = cluster
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._tend, name="dualserve-jobs-tend", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def notify(self, job_id: str) -> None:
        self.cluster.send(RUN_JOB, job_id)

    def _tend(self) -> None:
        last_collect = time.monotonic()
        while not self._stopping.wait(RECOVER_EVERY):
            try:
                # A job whose worker stopped heartbeating (its machine died, or its run ended while
                # Redis was away) is queued again, and sent again: Celery would only redeliver it
                # after the visibility timeout, hours later. A second delivery of a job that ended
                # or runs is dropped by RedisRecords.take.
                for job_id in self.jobs.records.recover(owner_alive, STALE_AFTER, ATTEMPTS):
                    record = self.jobs.records.get(job_id)
                    if record is not None and record.status == "queued":
                        self.notify(job_id)
                if time.monotonic() - last_collect > COLLECT_EVERY:
                    last_collect = time.monotonic()
                    self.jobs._collect()
            except Exception:
                logger.exception("The job records could not be tended")
