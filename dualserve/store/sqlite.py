"""One SQLite database file shared by every worker process of a server, and the names of those
processes. Standard library only.

:class:`Database` is what the job records and the cache entries share: WAL mode, a connection
per thread (autocommit; transactions opened explicitly), a busy database waited for, and one
short ``BEGIN IMMEDIATE`` transaction per change, so that two processes never both take the same
row. :func:`new_owner` names a process in the rows it holds (a running job, a cache claim), and
:func:`owner_alive` tells whether it still runs.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database", "new_owner", "owner_alive"]


class Database:
    """The SQLite database at ``path``, its tables made by ``schema`` if missing."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._local = threading.local()
        # IF NOT EXISTS: every worker process may be first; executescript commits itself.
        self._connection().executescript(schema)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def new_owner() -> str:
    """A name for this process's rows: host, process id, and a token against a reused id."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by :func:`new_owner` still runs. Another host's is assumed to
    (only its heartbeat can tell)."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    pid = rest.partition(":")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
