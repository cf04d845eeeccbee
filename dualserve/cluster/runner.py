"""The job runner of an API process in a cluster: a queued job goes to Celery, by its id.

The second implementation of :class:`~dualserve.serving.jobs.JobRunner`, beside the embedded one.
It runs nothing: the workers take the job's record from Redis and its request from the store
(:func:`dualserve.cluster.app.run_job`). What it keeps doing here is the store's housekeeping
(expired records dropped, their blobs deleted, the store kept within its bound), once a minute.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .connection import RUN_JOB, Cluster

if TYPE_CHECKING:
    from ..serving.jobs import Jobs

__all__ = ["CeleryRunner"]

logger = logging.getLogger("dualserve")

#: Seconds between two collections of expired jobs.
COLLECT_EVERY = 60.0


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
        while not self._stopping.wait(COLLECT_EVERY):
            try:
                self.jobs._collect()
            except Exception:
                logger.exception("Expired jobs could not be collected")
