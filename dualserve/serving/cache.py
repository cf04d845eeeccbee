"""Cached answers: a ``/run`` answered from the result store while its entry lives. No web framework.

A pipeline is cached by ``@cached(ttl=...)`` on its ``run_api``, or by the service's ``cache_ttl``
(``--cache-ttl``); the decorator's ttl wins. Its run then has two more steps (see
:meth:`~dualserve.serving.runs.Call.steps`): a lookup before ``run_api``, which ends the run with
the stored answer when there is one, and after the answer is made, keeping it: the answer is
stored (a stream read to its end) and the request gets the stored rendering, so the first answer
has the ETag of every later one. Only 2xx answers are kept; an error runs again next time.

The key of a request: the pipeline, its validated arguments (an upload by its content's SHA-256,
name and type), and what chooses the representation: ``Accept`` and the ``format``/``index``
query controls. The method is not in it: GET, HEAD and POST with the same arguments share an
entry, HEAD, 304 and Range being the core's work on the stored file.

Single flight: in a process, the first request of a key leads and the others wait for it (on
the event loop for an async pipeline, so they hold no thread); across processes, the leader of
each process takes the key's claim (:mod:`dualserve.store.cache`) or polls until the answer is
stored. A leader whose run fails gives the claim back, and the next request runs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pydantic_core

from ..core.reply import Reply, StreamBody
from ..core.request import Request
from ..store import BLOBS_DIR, JOBS_FILE, Blobs, Records
from ..store.cache import CACHE_FILE, CacheEntries, CacheEntry
from ..store.sqlite import new_owner
from ..uploads import UploadFile
from . import metrics
from .stored import StoredAnswer, store_reply, stored_result

if TYPE_CHECKING:
    from .runs import Call
    from .service import Service

__all__ = ["COLLECT_EVERY", "POLL", "STALE_AFTER", "Cache", "CachedRun", "Flight", "request_key"]

logger = logging.getLogger("dualserve")

#: Seconds between looks at another process's claim. A waiting request learns of the stored
#: answer within this; only one request per key and process polls (the others wait for it), so
#: it costs SQLite some twenty reads a second per key being made.
POLL = 0.05
#: A claim (or a leader in this process) older than this is taken over even though its owner
#: lives: a process id used again, a run stuck for good. A run slower than this merely runs twice;
#: ten minutes is well past a generation's usual length. An owner whose process is gone is
#: taken over at once, and a service ``timeout`` bounds how long a request waits in any case.
STALE_AFTER = 600.0
#: Seconds between collections of expired entries (by a process that runs a pipeline), as jobs do.
COLLECT_EVERY = 60.0
_HASH_CHUNK = 1024 * 1024


#: Cache entries a process remembers, so that a hit reads no SQL.
KNOWN_ENTRIES = 4096


class Uncacheable(Exception):
    """The arguments hold a value with no stable key: the run goes on as if not cached."""


def request_key(call: Call) -> str:
    """The cache key of ``call``: SHA-256 over what decides its answer (see the module docstring)."""
    request = call.request
    controls = {key: value for key, value in request.query if key in call.pipeline.controls}
    arguments = _uploads_hashed(call.arguments) if call.pipeline.parameters.uploads else call.arguments
    # The call's class too: a legacy route with json="flask" writes the same JSON otherwise.
    document = [
        call.pipeline.name,
        type(call).__name__,
        arguments,
        request.headers.get("accept"),
        sorted(controls.items()),
    ]
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=_jsonable)
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as exc:
        raise Uncacheable(str(exc)) from exc
    return hashlib.sha256(text.encode()).hexdigest()


def _uploads_hashed(value: Any) -> Any:
    # Before serialising: pydantic would take an upload's stream for an iterator and read it up.
    if isinstance(value, UploadFile):
        return {"filename": value.filename, "content_type": value.content_type, "sha256": _digest(value.stream)}
    if isinstance(value, dict):
        return {key: _uploads_hashed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_uploads_hashed(item) for item in value]
    return value


def _jsonable(value: Any) -> Any:
    # What json cannot write itself (a model, a date, bytes, a set), as pydantic writes it.
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return pydantic_core.to_jsonable_python(value, bytes_mode="base64")


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)  # run_api reads it from the start
    return digest.hexdigest()


class Flight:
    """A key being made in this process: its leader runs, the others wait until it lands."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._landed = threading.Event()
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], object]] = []

    def land(self) -> None:
        with self._lock:
            self._landed.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def wait(self) -> None:
        """Wait in this thread until it lands, or goes stale."""
        self._landed.wait(self._left())

    async def landed(self) -> None:
        """Wait on this event loop (no thread held) until it lands, or goes stale."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

        with self._lock:
            if self._landed.is_set():
                return
            self._wakers.append(wake)
        await asyncio.wait({future}, timeout=self._left())

    def _left(self) -> float:
        return max(0.0, self.started + STALE_AFTER - time.monotonic())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> StoredAnswer:
    # The answers served most: parsed once, not on every hit.
    return StoredAnswer.from_dict(json.loads(text))


class Cache:
    """The cache of one service: its entries and blobs under ``state_dir``, and the keys being
    made in this process."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.entries = CacheEntries(state_dir / CACHE_FILE)
        self.blobs = Blobs(state_dir / BLOBS_DIR)
        self.owner = new_owner()
        self._flights: dict[str, Flight] = {}
        self._lock = threading.Lock()
        self._collected = 0.0
        self._records: Records | None = None
        # Entries this process has read: a live entry never changes, so a hit needs no SQL until
        # it expires (or its blob turns out gone). Bounded; the oldest read go first.
        self._known: dict[str, CacheEntry] = {}

    def entry(self, key: str) -> CacheEntry | None:
        """The live entry of ``key``: remembered, or read (and remembered)."""
        known = self._known.get(key)
        if known is not None and known.expires_at > time.time():
            return known
        entry = self.entries.get(key)
        with self._lock:
            if entry is None:
                self._known.pop(key, None)
            else:
                if len(self._known) >= KNOWN_ENTRIES:
                    self._known.pop(next(iter(self._known)))
                self._known[key] = entry
        return entry

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight of ``key`` in this process, and whether the caller leads it (a new one)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None and time.monotonic() - flight.started < STALE_AFTER:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: str, flight: Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.land()

    def answer(self, entry: CacheEntry, call: Call, age: bool = True) -> Reply | None:
        """``entry`` rendered for ``call``'s request, with ``Age``; None (and the entry forgotten)
        if its blob is gone."""
        stored = _parsed(entry.answer)
        extra = (("age", str(max(0, int(time.time() - entry.stored_at)))),) if age else ()
        result = stored_result(self.blobs, stored, extra)
        if result is None:
            self._known.pop(entry.key, None)
            self.entries.forget(entry.key, entry.digest)
            return None
        return call.render(result)

    def collect(self) -> None:
        """Drop expired entries and their blobs (once every :data:`COLLECT_EVERY` seconds)."""
        now = time.monotonic()
        with self._lock:
            if now - self._collected < COLLECT_EVERY:
                return
            self._collected = now
        try:
            self.drop(self.entries.expire(STALE_AFTER))
        except Exception:
            logger.exception("The cache could not drop its expired entries")

    def drop(self, digests: list[str]) -> None:
        """Delete the blobs of ``digests`` that no entry and no job refers to."""
        if not digests:
            return
        unused = set(digests) - self.entries.digests_in_use() - self._job_digests()
        for digest in unused:
            self.blobs.delete(digest)

    def _job_digests(self) -> set[str]:
        if self._records is None:
            if not (self.state_dir / JOBS_FILE).exists():
                return set()  # no job was ever recorded here: none refers to a blob
            self._records = Records(self.state_dir / JOBS_FILE)
        return self._records.digests_in_use()


class CachedRun:
    """The cache's part in one run of a cached pipeline: :meth:`lookup` before ``run_api``,
    :meth:`keep` after, :meth:`end` however the run ended."""

    def __init__(self, service: Service, call: Call, ttl: float) -> None:
        self.service = service
        self.call = call
        self.ttl = ttl
        self.key: str | None = None
        #: Arguments with no stable key: the run goes on as if the pipeline were not cached.
        self.off = False
        self._flight: Flight | None = None
        self._claimed = False

    @property
    def render_request(self) -> Request | None:
        """What the answer to keep is rendered for: a plain GET with the request's ``Accept`` and
        query, so that a HEAD, a conditional or a Range request still gets the whole answer
        stored (and then its own rendering of it); None when not keeping."""
        if self.off:
            return None
        request = self.call.request
        headers = _AcceptOnly(request.headers.get("accept"))
        return Request("GET", headers, request.query_string, b"", request.framework, request.path_params)

    # --- before run_api -----------------------------------------------------------------------------

    def lookup(self) -> Reply | None:
        """From a thread: the stored answer, or None when this request is to run the pipeline."""
        waited = False
        while True:
            outcome = self._attempt()
            if outcome is None or isinstance(outcome, Reply):
                return self._counted(outcome, waited)
            waited = True
            if isinstance(outcome, Flight):
                outcome.wait()
            else:
                time.sleep(outcome)

    async def alookup(self) -> Reply | None:
        """:meth:`lookup` from an event loop: each look in the pool, each wait on the loop."""
        waited = False
        while True:
            outcome = await self.service.to_thread(self._attempt)
            if outcome is None or isinstance(outcome, Reply):
                return self._counted(outcome, waited)
            waited = True
            if isinstance(outcome, Flight):
                await outcome.landed()
            else:
                await asyncio.sleep(outcome)

    def _counted(self, outcome: Reply | None, waited: bool) -> Reply | None:
        # For /metrics: a hit, a request that waited for another's run (coalesced), or a run.
        if not self.off:
            kind = "miss" if outcome is None else "coalesced" if waited else "hit"
            metrics.count_cache(self.call.pipeline.name, kind)
        return outcome

    def _attempt(self) -> Reply | Flight | float | None:
        """One look, in a thread: the stored answer; None to run; a flight of this process to
        wait for; or seconds to wait before looking again (another process makes it)."""
        if self.key is None:
            try:
                self.key = request_key(self.call)
            except Uncacheable as exc:
                logger.debug("Pipeline %r runs uncached: %s", self.call.pipeline.name, exc)
                self.off = True
                return None
        cache = self.service.cache
        if self._flight is None:
            entry = cache.entry(self.key)
            reply = cache.answer(entry, self.call) if entry is not None else None
            if reply is not None:
                return reply
            flight, leading = cache.join(self.key)
            if not leading:
                return flight
            self._flight = flight
        claimed = cache.entries.claim(self.key, cache.owner, STALE_AFTER)
        if claimed is True:
            self._claimed = True
            cache.collect()
            return None
        if claimed is False:
            return POLL
        reply = cache.answer(claimed, self.call)  # stored by another process meanwhile
        if reply is None:
            return 0.0  # its blob was gone: forgotten, so the next look claims
        self._land()
        return reply

    # --- after run_api ------------------------------------------------------------------------------

    def keep(self, reply: Reply) -> Reply:
        """From a thread: store a 2xx ``reply`` (rendered for :attr:`render_request`) and answer
        the stored rendering for the request; any other reply is answered as it is."""
        if not self._claimed or reply.passthrough is not None or not 200 <= reply.status_code < 300:
            return reply
        cache = self.service.cache
        try:
            answer = store_reply(cache.blobs, reply)
        finally:
            reply.close()  # its own cleanups: a temp file the run created is deleted once copied
        now = time.time()
        assert self.key is not None
        text = json.dumps(answer.to_dict())
        entry, unused = cache.entries.put(self.key, self.call.pipeline.name, text, answer.digest, now, now + self.ttl)
        self._claimed = False
        self._land()
        if unused is not None:
            cache.drop([unused])
        kept = cache.answer(entry, self.call, age=entry.stored_at != now)  # made for this request: no Age
        if kept is None:
            raise RuntimeError("The answer to cache was deleted as it was stored.")
        return kept

    async def akeep(self, reply: Reply) -> Reply:
        """:meth:`keep` from an event loop: an async stream is read from the pool thread that
        stores it, each chunk pulled on this loop."""
        body = reply.body
        if isinstance(body, StreamBody) and isinstance(body.chunks, AsyncIterator):
            reply.body = StreamBody(_pulled(body.chunks, asyncio.get_running_loop()))
        return await self.service.to_thread(self.keep, reply)

    def end(self) -> None:
        """However the run ended: a leader that stored nothing gives its claim back and lets the
        next waiting request run. A blocking write, so from a loop it goes to the pool."""
        if self._flight is None:
            return
        if asyncio._get_running_loop() is not None:  # asyncio's check, without an exception
            self.service.submit(self._give_back)
        else:
            self._give_back()

    def _give_back(self) -> None:
        try:
            if self._claimed and self.key is not None:
                self._claimed = False
                self.service.cache.entries.release(self.key, self.service.cache.owner)
        except Exception:
            logger.exception("The cache could not give back its claim of a failed run")
        finally:
            self._land()

    def _land(self) -> None:
        flight, self._flight = self._flight, None
        if flight is not None and self.key is not None:
            self.service.cache.land(self.key, flight)


class _AcceptOnly:
    """Request headers with ``Accept`` alone: what negotiation reads, and no condition or range."""

    __slots__ = ("accept",)

    def __init__(self, accept: str | None) -> None:
        self.accept = accept

    def get(self, key: str, /) -> str | None:
        return self.accept if key.lower() == "accept" else None


def _pulled(chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """``chunks``, which live on ``loop``, iterated from another thread."""

    async def step() -> bytes:
        return await chunks.__anext__()

    async def close() -> None:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    try:
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(step(), loop).result()
            except StopAsyncIteration:
                return
    finally:
        asyncio.run_coroutine_threadsafe(close(), loop).result()
