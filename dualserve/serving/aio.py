"""One event loop for all of a process's async wrapper code. Standard library only.

An ``async def setup()``, ``async def run_api``, an async generator, or a Starlette background
task all run on the same loop, in a daemon thread, whichever frontend called them: Flask views
(threads with no loop), FastAPI (the server's loop), FastAPI mounted in Flask. So what a
wrapper's ``setup()`` bound to "the" loop (an ``httpx.AsyncClient``, an ``asyncio.Lock``, a
batching task) keeps working on every frontend. FastAPI awaits the portal without blocking its
own loop; the cost is one cross-loop hop per call (and per chunk of an async stream).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

from ..core.streams import aclose_iterator

__all__ = ["Portal", "portal"]

T = TypeVar("T")


class Portal:
    """One event loop in a background thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="dualserve-portal", daemon=True).start()
                self._loop = loop
            return self._loop

    def call(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the portal's loop and wait for its result in this (other) thread."""
        loop = self.loop
        if _running_loop() is loop:
            raise RuntimeError("Portal.call() would wait for itself: await the awaitable instead.")
        return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop).result()

    async def acall(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the portal's loop and await its result from any loop."""
        loop = self.loop
        if _running_loop() is loop:
            return await awaitable
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop))

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Iterate an async iterator on the portal from a thread; closing this closes it too."""
        try:
            while True:
                try:
                    yield self.call(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if hasattr(iterator, "aclose"):
                self.call(aclose_iterator(iterator))

    async def aiterate(self, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
        """Iterate an async iterator on the portal from another loop; closing this closes it too."""
        try:
            while True:
                try:
                    yield await self.acall(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if hasattr(iterator, "aclose"):
                await self.acall(aclose_iterator(iterator))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wait() -> T:
        return await awaitable

    return wait()


#: The process's portal, shared by every app in it.
portal = Portal()
