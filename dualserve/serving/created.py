"""Which files a run created: the temp files behind a Hayhooks ``FileResponse``.

Hayhooks' examples write each result to ``NamedTemporaryFile(delete=False)`` and return a
``FileResponse`` of it, which nobody deletes: one file left per call, one per HEAD. dualserve
deletes such a file once the answer is over, but only a file the run itself *created* (opened
with ``O_CREAT | O_EXCL``, as ``tempfile`` does, so it cannot have existed before) in the temp
directory: never a file that was there before the run, nor one elsewhere.

The creations are seen through Python's audit hook for ``open`` (PEP 578), recorded only while a
run is in progress in this context: other code pays one context-variable lookup per audited event.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Created", "is_temp_file_created", "is_written_by_run"]

T = TypeVar("T")
_EXCLUSIVE = os.O_CREAT | os.O_EXCL
_WRITING = os.O_WRONLY | os.O_RDWR
_CLOCK_MARGIN = 0.5
_recording: ContextVar[Created | None] = ContextVar("dualserve_created_files", default=None)
_installed = False


class Created:
    """The files created while it is entered (in this context, and in the awaitables it wraps)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        #: Every file the run opened for writing (created or not): such a file is the run's work.
        self.written: list[str] = []
        #: When the run began (first entered): a file modified since was written by the run.
        self.started: float | None = None
        # Entered again inside itself (an async run_api awaited on the portal from a run's thread).
        self._tokens: list[Token[Created | None]] = []
        _install()

    def __enter__(self) -> Created:
        if self.started is None:
            self.started = time.time()
        self._tokens.append(_recording.set(self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _recording.reset(self._tokens.pop())

    async def watch(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` recording what it creates: it may run on another loop's task, whose
        context is its own, so the recording is set inside it."""
        with self:
            return await awaitable


def is_written_by_run(path: Path, mtime: float, created: Created) -> bool:
    """Whether the file at ``path`` (last modified at ``mtime``) is this run's work: created by it,
    or modified since it began. Its bytes may then differ on the next run: not a stored file."""
    # A file's time comes from the kernel's coarse clock, which lags the time read at the start by
    # up to a tick: a margin, erring towards "written" (the safe side: Range is then refused).
    if created.started is not None and mtime >= created.started - _CLOCK_MARGIN:
        return True
    try:
        return path.resolve() in {Path(name).resolve() for name in [*created.paths, *created.written]}
    except (OSError, ValueError):
        return False


def is_temp_file_created(path: Path, created: Created) -> bool:
    """Whether ``path`` is a file ``created`` saw made, in the temp directory."""
    try:
        resolved = path.resolve()
        made = {Path(name).resolve() for name in created.paths}
        return resolved in made and resolved.is_relative_to(Path(tempfile.gettempdir()).resolve())
    except (OSError, ValueError):
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open":
        return
    recording = _recording.get()
    if recording is None:
        return
    path, _, flags = args
    if not isinstance(flags, int) or not isinstance(path, (str, bytes)):
        return
    if flags & _EXCLUSIVE == _EXCLUSIVE:
        recording.paths.append(os.fsdecode(path))
    elif flags & _WRITING:
        recording.written.append(os.fsdecode(path))


def _install() -> None:
    # An audit hook cannot be removed, so it is added once per process, on first use.
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True
