"""The result store: job records and content-addressed blobs. Standard library only; no web framework.

Embedded (the default), both live under one state directory that every worker process of a server
shares: the records in SQLite, the blobs as files. Scaled out (docs/contract.md section 7), the
records live in Redis (:mod:`.redis_records`) and the blobs in a shared directory or S3
(:mod:`.s3`); those modules import their client libraries, so this package does not import them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .blobs import Blob, Blobs
from .records import JobRecord, Records

if TYPE_CHECKING:
    from .redis_records import RedisRecords

__all__ = ["BLOBS_DIR", "JOBS_FILE", "Blob", "Blobs", "JobRecord", "Records", "Store", "Unavailable"]

#: The job records' file in the state directory.
JOBS_FILE = "jobs.sqlite3"
#: The blobs' folder in the state directory (job results and cached answers share it).
BLOBS_DIR = "blobs"


class Unavailable(Exception):
    """The shared job store (Redis) cannot be reached; the answer is a 503."""


class Store:
    """The records and blobs under ``state_dir`` (made if missing), unless others are given (a
    scaled-out service's, in Redis and a shared directory or S3)."""

    def __init__(
        self, state_dir: Path, records: Records | RedisRecords | None = None, blobs: Blobs | None = None
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.records: Records | RedisRecords = records if records is not None else Records(state_dir / JOBS_FILE)
        self.blobs = blobs if blobs is not None else Blobs(state_dir / BLOBS_DIR)
