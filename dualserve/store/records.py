"""Job records in SQLite: what was asked, where it stands, what it made. Standard library only.

One database file in the state directory, in WAL mode, shared by every worker process of a server
(uvicorn ``--workers``, gunicorn's workers): a job submitted to one process can be run by another,
followed and canceled from a third. Every change is one short transaction (``BEGIN IMMEDIATE``),
so two processes never claim the same job. Each thread has its own connection.

A job's events (status changes and progress reports) are rows numbered from 1, the ids that
server-sent events carry, so ``Last-Event-ID`` resumes exactly where a client left.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sqlite import Database

__all__ = ["FINAL", "IdempotencyMismatch", "JobRecord", "Records"]

#: The statuses a job ends in.
FINAL = frozenset({"succeeded", "failed", "canceled"})
#: Seconds a deleted job's record (and its events) is kept before it is dropped.
DELETED_GRACE = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    progress REAL,
    message TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    expires_at REAL NOT NULL,
    error TEXT,
    result TEXT,
    idempotency_key TEXT,
    body_hash TEXT,
    owner TEXT,
    heartbeat_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (pipeline, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
CREATE TABLE IF NOT EXISTS events (
    job TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
"""


class IdempotencyMismatch(Exception):
    """The ``Idempotency-Key`` names a job submitted with another request."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    pipeline: str
    status: str
    request: dict[str, Any]
    progress: float | None
    message: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    expires_at: float
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    owner: str | None
    attempts: int
    cancel: bool
    deleted: bool
    seq: int

    @property
    def ended(self) -> bool:
        return self.status in FINAL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            id=row["id"],
            pipeline=row["pipeline"],
            status=row["status"],
            request=json.loads(row["request"]),
            progress=row["progress"],
            message=row["message"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            expires_at=row["expires_at"],
            error=json.loads(row["error"]) if row["error"] else None,
            result=json.loads(row["result"]) if row["result"] else None,
            owner=row["owner"],
            attempts=row["attempts"],
            cancel=bool(row["cancel"]),
            deleted=bool(row["deleted"]),
            seq=row["seq"],
        )


class Records(Database):
    """The job records in the SQLite database at ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # --- jobs ---------------------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        pipeline: str,
        request: dict[str, Any],
        expires_at: float,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new queued job, or the one ``idempotency_key`` already names (and False): the same
        request again is the same job; another request under the same key is refused."""
        with self._write() as db:
            now = time.time()
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE pipeline = ? AND idempotency_key = ? AND deleted = 0 AND expires_at > ?",
                    (pipeline, idempotency_key, now),
                ).fetchone()
                if row is not None:
                    if row["body_hash"] != body_hash:
                        raise IdempotencyMismatch(idempotency_key)
                    return JobRecord.from_row(row), False
                # An expired or deleted job's key may be used again.
                db.execute(
                    "UPDATE jobs SET idempotency_key = NULL WHERE pipeline = ? AND idempotency_key = ?",
                    (pipeline, idempotency_key),
                )
            db.execute(
                "INSERT INTO jobs (id, pipeline, status, request, created_at, expires_at, idempotency_key, body_hash)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, pipeline, json.dumps(request), now, expires_at, idempotency_key, body_hash),
            )
            self._event(db, job_id)
        record = self.get(job_id, include_deleted=True)
        assert record is not None
        return record, True

    def get(self, job_id: str, include_deleted: bool = False) -> JobRecord | None:
        """The job, unless it is unknown, expired, or deleted."""
        row = self._connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        record = JobRecord.from_row(row)
        if not include_deleted and (record.deleted or record.expires_at <= time.time()):
            return None
        return record

    def claim(self, owner: str, pipelines: tuple[str, ...]) -> JobRecord | None:
        """The oldest queued job of one of ``pipelines`` (the ones this runner serves), now running
        under ``owner``; None if none waits."""
        if not pipelines:
            return None
        marks = ",".join("?" * len(pipelines))
        with self._write() as db:
            now = time.time()  # in the transaction: times follow the order the writes take
            row = db.execute(
                "UPDATE jobs SET status = 'running', owner = ?, started_at = ?, heartbeat_at = ?,"
                " attempts = attempts + 1"
                " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND deleted = 0"
                f" AND pipeline IN ({marks}) ORDER BY created_at LIMIT 1)"
                " RETURNING id",
                (owner, now, now, *pipelines),
            ).fetchone()
            if row is None:
                return None
            self._event(db, row["id"])
        return self.get(row["id"], include_deleted=True)

    def heartbeat(self, owner: str, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND owner = ? AND status = 'running'",
                [(time.time(), job_id, owner) for job_id in job_ids],
            )

    def report(self, job_id: str, progress: float | None, message: str | None) -> bool:
        """Record progress; whether the job has been canceled (the run should stop)."""
        with self._write() as db:
            row = db.execute("SELECT status, cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["cancel"] or row["status"] != "running":
                return True
            db.execute("UPDATE jobs SET progress = ?, message = ? WHERE id = ?", (progress, message, job_id))
            self._event(db, job_id)
        return False

    def is_canceled(self, job_id: str) -> bool:
        row = self._connection().execute("SELECT status, cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or bool(row["cancel"]) or row["status"] == "canceled"

    def finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """End a running job; False if it is no longer this owner's to end (canceled, or taken
        over after this process was thought dead), and the result must be thrown away."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE jobs SET status = ?, ended_at = ?, result = ?, error = ?, progress = ?"
                " WHERE id = ? AND owner = ? AND status = 'running' AND cancel = 0",
                (
                    status,
                    time.time(),
                    json.dumps(result) if result is not None else None,
                    json.dumps(error) if error is not None else None,
                    1.0 if status == "succeeded" else None,
                    job_id,
                    owner,
                ),
            ).rowcount
            if changed:
                self._event(db, job_id)
        return bool(changed)

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel and delete the job: a queued one never runs, a running one is asked to stop.
        Answers the job as it was made ``canceled`` (None if unknown)."""
        with self._write() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ? AND deleted = 0", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] not in FINAL:
                db.execute(
                    "UPDATE jobs SET status = 'canceled', cancel = 1, ended_at = ?, progress = NULL WHERE id = ?",
                    (time.time(), job_id),
                )
                self._event(db, job_id)
        record = self.get(job_id, include_deleted=True)
        with self._write() as db:
            db.execute("UPDATE jobs SET deleted = 1 WHERE id = ?", (job_id,))
        return record

    def recover(self, is_alive: Callable[[str], bool], stale_after: float, attempts: int) -> list[str]:
        """Jobs whose process died mid-run (its owner is not alive, or no heartbeat for
        ``stale_after`` seconds): queued again, or failed once ``attempts`` runs were interrupted."""
        now = time.time()
        recovered = []
        with self._write() as db:
            rows = db.execute("SELECT id, owner, heartbeat_at, attempts FROM jobs WHERE status = 'running'").fetchall()
            for row in rows:
                if is_alive(row["owner"] or "") and (row["heartbeat_at"] or 0) > now - stale_after:
                    continue
                if row["attempts"] >= attempts:
                    error = {
                        "status": 500,
                        "detail": f"The job was interrupted {row['attempts']} times (the server stopped).",
                    }
                    db.execute(
                        "UPDATE jobs SET status = 'failed', ended_at = ?, error = ?, owner = NULL WHERE id = ?",
                        (now, json.dumps(error), row["id"]),
                    )
                else:
                    db.execute(
                        "UPDATE jobs SET status = 'queued', owner = NULL, progress = NULL, message = ? WHERE id = ?",
                        ("interrupted; queued again", row["id"]),
                    )
                self._event(db, row["id"])
                recovered.append(row["id"])
        return recovered

    def take(
        self, job_id: str, owner: str, stale_after: float, attempts: int, is_alive: Callable[[str], bool]
    ) -> JobRecord | None:
        """The job ``job_id`` now running under ``owner``, for a runner handed that one job (a Celery
        task): a queued job starts; a running one whose process died (as :meth:`recover` judges) is
        taken over, or ends failed once ``attempts`` runs were interrupted. None in every other case."""
        with self._write() as db:
            now = time.time()
            row = db.execute(
                "SELECT status, owner, heartbeat_at, attempts, cancel, deleted FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or row["cancel"] or row["deleted"]:
                return None
            if row["status"] == "queued":
                db.execute(
                    "UPDATE jobs SET status = 'running', owner = ?, started_at = ?, heartbeat_at = ?,"
                    " attempts = attempts + 1 WHERE id = ?",
                    (owner, now, now, job_id),
                )
            elif row["status"] != "running" or (
                is_alive(row["owner"] or "") and (row["heartbeat_at"] or 0) > now - stale_after
            ):
                return None
            elif row["attempts"] >= attempts:
                error = {
                    "status": 500,
                    "detail": f"The job was interrupted {row['attempts']} times (the server stopped).",
                }
                db.execute(
                    "UPDATE jobs SET status = 'failed', ended_at = ?, error = ?, owner = NULL WHERE id = ?",
                    (now, json.dumps(error), job_id),
                )
                self._event(db, job_id)
                return None
            else:
                # Celery delivered the task again after its worker was killed mid-job: run it anew.
                db.execute(
                    "UPDATE jobs SET owner = ?, started_at = ?, heartbeat_at = ?, attempts = attempts + 1,"
                    " progress = NULL, message = ? WHERE id = ?",
                    (owner, now, now, "interrupted; running again", job_id),
                )
            self._event(db, job_id)
        return self.get(job_id, include_deleted=True)

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        rows = (
            self._connection()
            .execute("SELECT seq, data FROM events WHERE job = ? AND seq > ? ORDER BY seq", (job_id, after))
            .fetchall()
        )
        return [(row["seq"], json.loads(row["data"])) for row in rows]

    def expire(self) -> list[str]:
        """Drop the records of jobs past their lifetime; the result digests they held."""
        now = time.time()
        with self._write() as db:
            # A deleted job's record stays a minute (answering 404 meanwhile), so that a client
            # following its events still gets the final "canceled" event.
            rows = db.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')"
                " AND (expires_at <= ? OR (deleted = 1 AND ended_at <= ?)) RETURNING id, result, request",
                (now, now - DELETED_GRACE),
            ).fetchall()
            db.executemany("DELETE FROM events WHERE job = ?", [(row["id"],) for row in rows])
        digests = []
        for row in rows:
            result = json.loads(row["result"]) if row["result"] else {}
            request = json.loads(row["request"])
            digests += [value for value in (result.get("digest"), request.get("body")) if value]
        return digests

    def digests_in_use(self) -> set[str]:
        """Every blob a job record still refers to: its request body and its result."""
        rows = self._connection().execute("SELECT request, result FROM jobs").fetchall()
        used = set()
        for row in rows:
            body = json.loads(row["request"]).get("body")
            if body:
                used.add(body)
            if row["result"]:
                used.add(json.loads(row["result"])["digest"])
        return used

    def counts(self) -> dict[str, int]:
        """The live jobs (not deleted, not expired) by status, for ``/metrics``."""
        rows = (
            self._connection()
            .execute(
                "SELECT status, COUNT(*) AS n FROM jobs WHERE deleted = 0 AND expires_at > ? GROUP BY status",
                (time.time(),),
            )
            .fetchall()
        )
        return {row["status"]: row["n"] for row in rows}

    def pending_digests(self) -> set[str]:
        """The request bodies of the jobs still to run or running: never evicted."""
        rows = self._connection().execute("SELECT request FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return {body for row in rows if (body := json.loads(row["request"]).get("body"))}

    # --- events -------------------------------------------------------------------------------------

    def _event(self, db: sqlite3.Connection, job_id: str) -> None:
        # The job as it now stands, numbered: what /jobs/{id}/events sends.
        row = db.execute("UPDATE jobs SET seq = seq + 1 WHERE id = ? RETURNING *", (job_id,)).fetchone()
        record = JobRecord.from_row(row)
        data = {"status": record.status, "progress": record.progress, "message": record.message}
        db.execute("INSERT INTO events (job, seq, data) VALUES (?, ?, ?)", (job_id, record.seq, json.dumps(data)))
