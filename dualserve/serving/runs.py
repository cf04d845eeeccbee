"""A run of one pipeline: the one run path, driven from a thread (Flask) or an event loop (FastAPI).

The steps of a run are written once, in :meth:`Call.steps`, as a generator that yields each
:class:`Step` and receives its outcome. Two drivers carry them out: :meth:`Call.run_sync` runs
every step in the calling thread, :meth:`Call.run_async` awaits each step, sending blocking work
to the service's pool. A step added to every run (a cache lookup before, a job record after) is
one ``yield`` in :meth:`Call.steps` and one :class:`Step` class, not a sync and an async twin.
Both drivers apply the service's timeout and turn any failure into the contract's JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.framework_responses import read_framework_response
from ..core.http import render
from ..core.negotiation import negotiate
from ..core.reply import Reply, discard, for_method
from ..core.request import Request
from ..core.returns import PassthroughResult, PathResult, Result, StreamResult, is_blocking, resolve
from ..core.streams import closer, prime_async, prime_sync
from ..exceptions import ResolveError
from .aio import portal
from .created import Created, is_temp_file_created, is_written_by_run
from .pipelines import Pipeline

if TYPE_CHECKING:
    from .cache import CachedRun
    from .service import Service

__all__ = ["Call", "Keep", "Lookup", "Step"]

logger = logging.getLogger("dualserve")


class Step:
    """One step of a run. :meth:`run` does it in a thread; :meth:`arun` from an event loop, by
    default :meth:`run` in the service's pool."""

    def run(self, call: Call) -> Any:
        raise NotImplementedError("The 'run' method must be implemented.")

    async def arun(self, call: Call) -> Any:
        return await call.service.to_thread(self.run, call)


class Invoke(Step):
    """``run_api`` itself: a sync one in a thread, an async one on the portal's loop."""

    def run(self, call: Call) -> Any:
        with call.service.context_for(call.pipeline), call.created:
            return call.pipeline.invoke(call.arguments, call.created.watch)

    async def arun(self, call: Call) -> Any:
        if not call.pipeline.is_async:
            return await super().arun(call)
        value = call.pipeline.function(**call.arguments)
        if inspect.isawaitable(value):
            return await portal.acall(call.created.watch(value))
        return value  # an async generator: nothing has run yet; Finish iterates it on the portal's loop


@dataclasses.dataclass
class Lookup(Step):
    """A cached pipeline's stored answer, which ends the run; None when this request runs it
    (it leads: the others with the same key wait for its answer)."""

    cached: CachedRun

    def run(self, call: Call) -> Reply | None:
        return self.cached.lookup()

    async def arun(self, call: Call) -> Reply | None:
        return await self.cached.alookup()  # SQLite in the pool; a follower waits on the loop


@dataclasses.dataclass
class Finish(Step):
    """What ``run_api`` returned, made the answer: resolved, negotiated, a stream primed (its first
    chunk pulled, so a failure is still a JSON 500), and the HTTP rules applied."""

    value: Any
    #: Rendered for this request instead of the call's (an answer to cache: a plain GET).
    request: Request | None = None

    def run(self, call: Call) -> Reply:
        result = call.resolve(self.value)
        if isinstance(result, StreamResult):
            if isinstance(result.chunks, AsyncIterator):
                result = dataclasses.replace(result, chunks=portal.iterate(result.chunks))
            result = prime_sync(result, call.label)
        return call.render(result, self.request)

    async def arun(self, call: Call) -> Reply:
        if is_blocking(self.value):  # image encoding: CPU, in the pool
            reply: Reply = await super().arun(call)
            return reply
        result = call.resolve(self.value)
        if isinstance(result, StreamResult):
            if isinstance(result.chunks, AsyncIterator):
                chunks = portal.aiterate(result.chunks)
                result = await prime_async(dataclasses.replace(result, chunks=chunks), call.label)
            else:
                result = await call.service.to_thread(prime_sync, result, call.label)
        return call.render(result, self.request)


@dataclasses.dataclass
class Keep(Step):
    """A cached pipeline's answer stored (a stream read to its end), and the request answered
    with the stored rendering; an error is answered as it is, and not stored."""

    cached: CachedRun
    reply: Reply

    def run(self, call: Call) -> Reply:
        return self.cached.keep(self.reply)

    async def arun(self, call: Call) -> Reply:
        return await self.cached.akeep(self.reply)


@dataclasses.dataclass
class Call:
    """A validated request for one pipeline, ready to run."""

    service: Service
    pipeline: Pipeline
    arguments: dict[str, Any]
    request: Request
    #: Run once the response is over: the request's uploads closed, a stream slot given back.
    cleanups: list[Callable[[], object]] = dataclasses.field(default_factory=list)
    #: The files ``run_api`` created (a temp file behind a FileResponse is deleted after the answer).
    created: Created = dataclasses.field(default_factory=Created)

    def steps(self) -> Generator[Step, Any, Reply]:
        """The run, step by step; each ``yield`` is answered with the step's outcome."""
        cached = self.service.cached_run(self)
        if cached is None:
            value = yield Invoke()
            reply: Reply = yield Finish(value)
            return reply
        try:
            found: Reply | None = yield Lookup(cached)
            if found is not None:
                return found
            value = yield Invoke()
            reply = yield Finish(value, cached.render_request)
            reply = yield Keep(cached, reply)
            return reply
        finally:
            cached.end()  # a leader that failed lets the next waiting request run

    def close(self) -> None:
        """Throw the call away unrun: its cleanups (the request's uploads) run now."""
        for cleanup in self.cleanups:
            cleanup()
        self.cleanups = []

    def run_sync(self, bounded: bool = True) -> Reply:
        """Run from a thread (the Flask side, a job's runner), bounded by the service's timeout
        unless not ``bounded`` (a job: it is not waited for by a request)."""
        timeout = self.service.timeout if bounded else None
        if timeout is None:
            return self._drive_sync()
        future = self.service.submit(self._drive_sync)
        try:
            return future.result(timeout)
        except FutureTimeout:
            # The thread cannot be stopped; what it answers later is closed and thrown away.
            future.add_done_callback(lambda done: discard(done.result()))
            return self._timed_out(timeout)

    async def run_async(self) -> Reply:
        """Run from an event loop (the FastAPI side), bounded by the service's timeout."""
        timeout = self.service.timeout
        if timeout is None:
            return await self._drive_async()
        task = asyncio.ensure_future(self._drive_async())
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:  # the request was cancelled; the run goes on without it
            task.add_done_callback(self.service.discard_late)
            raise
        if task in done:
            return task.result()
        task.add_done_callback(self.service.discard_late)
        return self._timed_out(timeout)

    def _drive_sync(self) -> Reply:
        steps = self.steps()
        try:
            outcome: Any = None
            while True:
                outcome = steps.send(outcome).run(self)
        except StopIteration as finished:
            reply: Reply = finished.value
        except Exception as exc:
            reply = self.service.failure(self.pipeline, exc)
        finally:
            steps.close()  # a step that failed: the run's own ``finally`` runs now
        return self._finished(reply)

    async def _drive_async(self) -> Reply:
        if not self.pipeline.is_async:
            # A sync pipeline's whole run in one thread: one hop instead of one per step.
            reply: Reply = await self.service.to_thread(self._drive_sync)
            return reply
        steps = self.steps()
        try:
            outcome: Any = None
            while True:
                outcome = await steps.send(outcome).arun(self)
        except StopIteration as finished:
            reply = finished.value
        except Exception as exc:
            reply = self.service.failure(self.pipeline, exc)
        finally:
            steps.close()
        return self._finished(reply)

    def _finished(self, reply: Reply) -> Reply:
        reply.cleanups += self.cleanups
        reply.wait = portal.call  # an async cleanup (a background task, a stream's aclose) runs on its loop
        return for_method(reply, self.request.method)

    def _timed_out(self, timeout: float) -> Reply:
        logger.error("Pipeline %r did not answer within %g s", self.pipeline.name, timeout)
        return self.service.timed_out(self.request)

    # --- what the steps share ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"The stream of pipeline {self.pipeline.name!r}"

    def resolve(self, value: Any) -> Result:
        result = resolve(value, self.pipeline.media_types)
        if isinstance(result, PassthroughResult):
            result = read_framework_response(result.response, self.cleanups) or result
            if isinstance(result, PathResult) and self._deletes(result.path):
                result = dataclasses.replace(result, delete_after=True)
        if isinstance(result, PathResult) and result.stored:
            if is_written_by_run(result.path, result.mtime, self.created):
                result = dataclasses.replace(result, stored=False)  # the run wrote it: the next may differ
        result = negotiate(result, self.request, self.pipeline.name, self.pipeline.controls)
        if isinstance(result, StreamResult):
            self._hold_stream_slot(result)
        return result

    def _deletes(self, path: Path) -> bool:
        # A framework response of a temp file this run created: nobody else will delete it.
        keep = not getattr(self.pipeline.wrapper, "delete_temp_responses", True)
        return not keep and is_temp_file_created(path, self.created)

    def _hold_stream_slot(self, result: StreamResult) -> None:
        # Checked before the first chunk is pulled, so a refused generator has not run at all;
        # it is still closed (a cleanup, so an async one is closed on its own loop).
        if not self.service.streams.take():
            close = closer(result.chunks)
            if close is not None:
                self.cleanups.append(close)
            raise self.service.too_many_streams()
        # Given back when the response is over: finished, cut off, answered by HEAD, or discarded.
        self.cleanups.append(self.service.streams.give_back)

    def render(self, result: Result, request: Request | None = None) -> Reply:
        """``result`` rendered for ``request``, by default the call's."""
        if isinstance(result, PassthroughResult):
            if result.framework != self.request.framework:
                raise ResolveError(
                    f"run_api returned a {result.framework} {type(result.response).__name__}, which this frontend "
                    f"cannot send; return bytes, a Path, an iterator or a Media to be served by every frontend."
                )
            return Reply(result.status_code, [], passthrough=result.response)
        return render(result, request or self.request)
