"""Running async wrapper code from threads (the Flask side). Standard library only.

Flask views run in worker threads with no event loop. An ``async def run_api`` or an async
generator is run on one long-lived loop in a daemon thread, so whatever a wrapper's ``setup()``
bound to "the" loop (an ``httpx.AsyncClient``, say) keeps working from request to request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

__all__ = ["Portal", "portal"]

T = TypeVar("T")


class Portal:
    """One event loop in a background thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def call(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the portal's loop and wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(_wrap(awaitable), self._running_loop()).result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Iterate an async iterator from this thread; closing the generator closes it too."""
        try:
            while True:
                try:
                    yield self.call(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                self.call(aclose())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="dualserve-portal", daemon=True).start()
                self._loop = loop
            return self._loop


async def _wrap(awaitable: Awaitable[T]) -> T:
    return await awaitable


#: The process's portal, shared by every Flask app in it.
portal = Portal()
