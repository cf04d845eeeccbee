"""Cached answers in SQLite: which stored answer a request key has, until when, and who is making it.

Standard library only. The table lives in ``cache.sqlite3`` beside the job records, not in
``jobs.sqlite3``: a cached pipeline writes on every miss (a claim, then an entry), and SQLite has
one writer per database, so cache traffic never waits on job progress reports nor they on it; a
server whose pipelines are only cached never creates job records (whose file starts the job
runner when a server starts); and deleting the file empties the cache and nothing else.

Single flight across processes: the first process to insert a key's *claim* runs the pipeline;
the others poll (:meth:`CacheEntries.claim` again) until the answer is stored, or until the claim
goes stale and one of them takes it over. A claim is stale when its owner's process is gone, or
when it is older than the ``stale_after`` the caller gives. WAL needs every process on one
machine (shared memory), so a process id always tells whether an owner lives.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .sqlite import Database, owner_alive

__all__ = ["CACHE_FILE", "CacheEntries", "CacheEntry", "cached_digests"]

#: The cache's database file in the state directory.
CACHE_FILE = "cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    answer TEXT NOT NULL,
    digest TEXT NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_by_expiry ON cache (expires_at);
CREATE TABLE IF NOT EXISTS cache_claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    #: The stored answer (:class:`~dualserve.serving.stored.StoredAnswer` as JSON text).
    answer: str
    digest: str
    stored_at: float
    expires_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CacheEntry:
        return cls(row["key"], row["answer"], row["digest"], row["stored_at"], row["expires_at"])


class CacheEntries(Database):
    """The cache entries and claims in the SQLite database at ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def get(self, key: str) -> CacheEntry | None:
        """The live entry of ``key``, if any."""
        row = (
            self._connection()
            .execute("SELECT * FROM cache WHERE key = ? AND expires_at > ?", (key, time.time()))
            .fetchone()
        )
        return CacheEntry.from_row(row) if row is not None else None

    def claim(self, key: str, owner: str, stale_after: float) -> CacheEntry | bool:
        """In one transaction: the live entry of ``key`` if there is one by now; else True when
        ``owner`` now holds the claim (none was held, or a stale one, or its own), and must run;
        False when another process's claim holds (poll again)."""
        with self._write() as db:
            now = time.time()
            row = db.execute("SELECT * FROM cache WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            if row is not None:
                return CacheEntry.from_row(row)
            held = db.execute("SELECT owner, claimed_at FROM cache_claims WHERE key = ?", (key,)).fetchone()
            if (
                held is not None
                and held["owner"] != owner
                and held["claimed_at"] > now - stale_after
                and owner_alive(held["owner"])
            ):
                return False
            db.execute(
                "INSERT OR REPLACE INTO cache_claims (key, owner, claimed_at) VALUES (?, ?, ?)", (key, owner, now)
            )
        return True

    def put(
        self, key: str, pipeline: str, answer: str, digest: str, stored_at: float, expires_at: float
    ) -> tuple[CacheEntry, str | None]:
        """Store ``key``'s entry and drop its claim (whoever holds it: the answer is there now).
        A live entry is never replaced, so every process serves one answer for a key's life: if
        one is there (a run that took over a claim it thought stale ended second), it stays.
        Answers the entry in force, and a digest no entry refers to any more, if any, for the
        caller to delete unless something else uses it."""
        with self._write() as db:
            row = db.execute("SELECT * FROM cache WHERE key = ?", (key,)).fetchone()
            db.execute("DELETE FROM cache_claims WHERE key = ?", (key,))
            if row is not None and row["expires_at"] > time.time():
                live = CacheEntry.from_row(row)
                return live, (digest if digest != live.digest else None)
            db.execute(
                "INSERT OR REPLACE INTO cache (key, pipeline, answer, digest, stored_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, pipeline, answer, digest, stored_at, expires_at),
            )
        old = row["digest"] if row is not None and row["digest"] != digest else None
        return CacheEntry(key, answer, digest, stored_at, expires_at), old

    def release(self, key: str, owner: str) -> None:
        """Give up ``owner``'s claim (its run failed): the next process to ask runs."""
        with self._write() as db:
            db.execute("DELETE FROM cache_claims WHERE key = ? AND owner = ?", (key, owner))

    def forget(self, key: str, digest: str) -> None:
        """Drop ``key``'s entry if it still names ``digest`` (its blob was found gone)."""
        with self._write() as db:
            db.execute("DELETE FROM cache WHERE key = ? AND digest = ?", (key, digest))

    def expire(self, stale_after: float) -> list[str]:
        """Drop the entries past their lifetime, and claims older than ``stale_after``; the
        digests the dropped entries held."""
        now = time.time()
        with self._write() as db:
            rows = db.execute("DELETE FROM cache WHERE expires_at <= ? RETURNING digest", (now,)).fetchall()
            db.execute("DELETE FROM cache_claims WHERE claimed_at <= ?", (now - stale_after,))
        return [row["digest"] for row in rows]

    def digests_in_use(self) -> set[str]:
        """Every blob an entry refers to (an expired one too, until :meth:`expire` drops it)."""
        return {row["digest"] for row in self._connection().execute("SELECT DISTINCT digest FROM cache")}


def cached_digests(state_dir: Path) -> set[str]:
    """The blobs the cache in ``state_dir`` refers to; none if it has no cache. For the job
    records' collection, which must not delete a blob a cached answer shares."""
    path = state_dir / CACHE_FILE
    if not path.exists():
        return set()
    db = sqlite3.connect(path, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT DISTINCT digest FROM cache")}
    except sqlite3.OperationalError:  # created a moment ago, its table not yet made
        return set()
    finally:
        db.close()
