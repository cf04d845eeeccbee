"""How many of a kind one process serves at once. Standard library only."""

from __future__ import annotations

import threading

__all__ = ["Slots"]


class Slots:
    """Up to ``limit`` holders at once (``None``: no limit).

    Taking never waits: a stream that finds every slot taken is refused with a 503 at once,
    because a client queued behind streams that may last minutes is worse off than one told to
    retry. The count is guarded by a lock, since threads and event loops take and give back alike.
    """

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("A limit must be 1 or more, or None for no limit.")
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a slot if one is free; the caller must :meth:`give_back` it exactly once."""
        with self._lock:
            if self.limit is not None and self.in_use >= self.limit:
                return False
            self.in_use += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.in_use -= 1
