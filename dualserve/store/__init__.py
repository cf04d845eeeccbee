"""The result store: job records in SQLite and content-addressed blobs, under one state directory
that every worker process of a server shares. Standard library only; no web framework."""

from __future__ import annotations

from pathlib import Path

from .blobs import Blob, Blobs
from .records import JobRecord, Records

__all__ = ["BLOBS_DIR", "JOBS_FILE", "Blob", "Blobs", "JobRecord", "Records", "Store"]

#: The job records' file in the state directory.
JOBS_FILE = "jobs.sqlite3"
#: The blobs' folder in the state directory (job results and cached answers share it).
BLOBS_DIR = "blobs"


class Store:
    """The records and blobs under ``state_dir`` (made if missing)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.records = Records(state_dir / JOBS_FILE)
        self.blobs = Blobs(state_dir / BLOBS_DIR)
