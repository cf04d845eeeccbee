"""The event loop all of a process's async wrapper code runs on. Standard library only.

An ``async def setup()``, ``async def run_api``, an async generator, or a Starlette background
task all run on one loop, whichever frontend called them: Flask views (threads with no loop),
FastAPI, FastAPI mounted in Flask. So what a wrapper's ``setup()`` bound to "the" loop (an
``httpx.AsyncClient``, an ``asyncio.Lock``, a batching task) keeps working on every frontend.

Which loop: the server's own where there is one. Under uvicorn, the ASGI factory is called on the
server's running loop, and the portal adopts it (:meth:`Portal.adopt`): FastAPI then awaits async
wrapper code with no hop at all, and the Flask mount's threads call into that loop. Where no
server loop exists (gunicorn, ``flask run``, an app built outside any loop), the portal starts
its own in a daemon thread on first use, and FastAPI awaits it across loops.
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
    """The loop async wrapper code runs on: a server's adopted loop, or one of its own in a
    background thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="dualserve-portal", daemon=True).start()
                self._loop = loop
            return self._loop

    def adopt(self) -> bool:
        """Make the loop running in this thread (a server's, calling its app factory) the portal's,
        unless the portal already has a live loop (what ran on it may be bound to it). Whether the
        running loop is now the portal's."""
        running = _running_loop()
        if running is None:
            return False
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = running
            return self._loop is running

    def is_current(self) -> bool:
        """Whether this thread is running the portal's loop: awaiting there needs no hop."""
        loop = self._loop
        return loop is not None and _running_loop() is loop

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

    def aiterate(self, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
        """``iterator`` as iterated from this loop: itself on the portal's loop (no hop per chunk),
        else each step awaited across loops; closing what is returned closes it too."""
        if self.is_current():
            return iterator
        return self._across(iterator)

    async def _across(self, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
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
    # asyncio's own check without an exception where no loop runs (it is in asyncio.events.__all__).
    return asyncio._get_running_loop()


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wait() -> T:
        return await awaitable

    return wait()


#: The process's portal, shared by every app in it.
portal = Portal()
