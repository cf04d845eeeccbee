"""Jobs: a generation as a resource that outlives its request. No web framework.

``POST /{name}/jobs`` (or ``POST /{name}/run`` with ``Prefer: respond-async``) validates the
request as ``/run`` would, records it, and answers ``202`` at once; a runner runs it later, in this
process or another that shares the state directory. ``GET /jobs/{id}`` is its JSON,
``/jobs/{id}/events`` its changes as server-sent events, ``/jobs/{id}/result`` the answer ``/run``
would have given, kept in the result store, and ``DELETE /jobs/{id}`` cancels it.

What a job runs is the request itself (method, query, the headers that choose the answer, the
body kept as a blob), prepared again where it runs: so a runner needs nothing but the state
directory, which is what lets Celery workers run them next (docs/contract.md section 7).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..core.http import render
from ..core.reply import Reply, error_reply, json_reply, method_not_allowed
from ..core.request import Request
from ..core.returns import StreamResult
from ..reporting import reporting
from ..store import Store, Unavailable
from ..store.cache import cached_digests
from ..store.records import FINAL, IdempotencyMismatch, JobRecord
from ..store.sqlite import new_owner, owner_alive
from .stored import StoredAnswer, store_reply, stored_result

if TYPE_CHECKING:
    from .service import Service

__all__ = ["EmbeddedRunner", "JobRunner", "Jobs", "prefers_async", "preferred_wait"]

logger = logging.getLogger("dualserve")

#: The request headers a job keeps: those that choose the answer (the rest are the client's).
KEPT_HEADERS = ("content-type", "accept")
#: How long ``Prefer: wait`` may hold a request, whatever it asks.
MAX_WAIT = 60.0
#: Seconds between polls of the records (events, waits) and between heartbeats.
POLL = 0.1
HEARTBEAT = 2.0
#: Seconds between looks at a job being waited for, scaled out (nothing in this process is told).
CLUSTER_POLL = 0.01
#: A running job with no heartbeat for this long is taken for interrupted.
STALE_AFTER = 30.0
#: Seconds between size checks of the store after results are stored (and a full one each minute).
SHRINK_EVERY = 5.0
#: Runs a job may be interrupted (a crash, SIGKILL) before it ends failed instead of queued again.
ATTEMPTS = 2
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class JobRunner(Protocol):
    """Runs the queued jobs: the embedded runner (threads in each server process) or Celery's
    workers (:class:`~dualserve.cluster.runner.CeleryRunner`). :class:`Jobs` records a job and
    tells the runner."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def notify(self, job_id: str) -> None:
        """Job ``job_id`` was queued; :class:`~dualserve.store.Unavailable` if it cannot be passed on."""


class Jobs:
    """The job endpoints and the running of one job, over ``state_dir``."""

    def __init__(
        self, service: Service, store: Store, result_ttl: float, runner: Callable[[Jobs], JobRunner | None]
    ) -> None:
        self.service = service
        self.records = store.records
        self.blobs = store.blobs
        self.result_ttl = result_ttl
        # Woken at each change this process makes to a job, so a wait or an event stream in the
        # same process answers at once; a change made by another process is seen at the next poll.
        self._changed = threading.Condition()
        self._changes = 0  # how many times _changed was notified: a waiter compares, never misses one
        self._last_shrink = 0.0
        #: None in a Celery worker: Celery delivers its jobs one by one.
        self.runner = runner(self)
        # Embedded, this process's runner wakes its waiters; scaled out, a job ends on a worker,
        # and a waiter here learns it only by reading Redis: more often (one GET per look).
        self._poll = POLL if service.cluster is None else CLUSTER_POLL
        if self.runner is not None:
            self.runner.start()

    def stop(self) -> None:
        """Stop this process's runner (its threads end after the job they run)."""
        if self.runner is not None:
            self.runner.stop()

    # --- the endpoints ----------------------------------------------------------------------------

    def submit(self, name: str, request: Request, prefix: str) -> Reply:
        """``POST /{name}/jobs``: 202 and the job, after the same validation as ``/run``."""
        if request.method != "POST":
            return method_not_allowed(("POST",))
        outcome = self.service.prepare(name, request)
        if isinstance(outcome, Reply):
            return outcome  # 404, 405, 413, 422 ...: nothing is recorded
        outcome.close()
        body = self.blobs.put_bytes(request.body).digest if request.body else None
        kept = {key: value for key in KEPT_HEADERS if (value := request.headers.get(key)) is not None}
        stored = {"query": request.query_string.decode("latin-1"), "headers": kept, "body": body}
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 255:
            return error_reply(400, "Idempotency-Key must be 1 to 255 characters.")
        try:
            record, created = self.records.create(
                _new_id(), name, stored, time.time() + self.result_ttl, key, json.dumps(stored, sort_keys=True)
            )
        except IdempotencyMismatch:
            return error_reply(422, "This Idempotency-Key was used for another request to this pipeline.")
        if created and self.runner is not None:
            try:
                self.runner.notify(record.id)
            except Unavailable:
                self.records.cancel(record.id)  # recorded, never queued: not a job anyone waits for
                raise
        wait = preferred_wait(request)
        if wait:
            record = self._wait(record, wait)
        # 201 only for a wait asked for: without one, a job that ended as it was recorded is still
        # what the client asked, an accepted job (202).
        status = 201 if wait and record.ended else 202
        headers = [("location", self.url(prefix, record.id))]
        if not record.ended:
            headers.append(("retry-after", "1"))
        return json_reply(status, self.document(record, prefix), headers)

    def status(self, job_id: str, request: Request, prefix: str) -> Reply:
        """``GET /jobs/{id}`` and ``DELETE /jobs/{id}``."""
        if request.method == "DELETE":
            canceled = self.records.cancel(job_id) if _JOB_ID.fullmatch(job_id) else None
            if canceled is None:
                return _unknown(job_id)
            self._touch()  # its record and events stay a minute; the tending thread drops them after
            return json_reply(200, self.document(canceled, prefix))
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(("GET", "HEAD", "DELETE"))
        record = self._get(job_id)
        if record is None:
            return _unknown(job_id)
        return json_reply(200, self.document(record, prefix))

    def result(self, job_id: str, request: Request) -> Reply:
        """``GET /jobs/{id}/result``: the stored answer, with every HTTP rule of ``/run``."""
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(("GET", "HEAD"))
        record = self._get(job_id)
        if record is None:
            return _unknown(job_id)
        if record.status == "canceled":
            return error_reply(410, "The job was canceled.")
        if record.status == "failed":
            error = record.error or {"status": 500, "detail": "The pipeline failed."}
            return error_reply(error["status"], error["detail"])
        if not record.ended or record.result is None:
            return error_reply(409, f"The job is {record.status}; its result is not ready.", [("retry-after", "1")])
        answer = StoredAnswer.from_dict(record.result)
        cluster = self.service.cluster
        if cluster is not None and cluster.s3_redirect and answer.status_code == 200:
            return self._redirect(answer)
        result = stored_result(self.blobs, answer)
        if result is None:
            return error_reply(410, "The job's result is no longer stored.")
        return render(result, request)

    def events(self, job_id: str, request: Request) -> Reply:
        """``GET /jobs/{id}/events``: server-sent events from ``Last-Event-ID`` on, to the end."""
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(("GET", "HEAD"))
        record = self._get(job_id)
        if record is None:
            return _unknown(job_id)
        last = request.headers.get("last-event-id") or ""
        after = int(last) if last.isdigit() else 0
        stream = StreamResult(media_type="text/event-stream", chunks=self._event_stream(job_id, after))
        return render(stream, request)

    def _redirect(self, answer: StoredAnswer) -> Reply:
        # --s3-redirect: the bytes come from the bucket, not through this process; the presigned
        # URL answers with the stored type and Content-Disposition, so the download is the same.
        presign = getattr(self.blobs, "presigned_url", None)
        assert presign is not None, "--s3-redirect needs an s3:// store (checked at start)"
        disposition = next((value for name, value in answer.headers if name == "content-disposition"), None)
        location = presign(answer.digest, answer.media_type, disposition)
        return Reply(303, [("location", location), ("cache-control", "no-store"), ("content-length", "0")])

    # --- what they share ------------------------------------------------------------------------

    def document(self, record: JobRecord, prefix: str) -> dict[str, Any]:
        """The job JSON of docs/contract.md section 6."""
        succeeded = record.status == "succeeded"
        return {
            "id": record.id,
            "pipeline": record.pipeline,
            "status": record.status,
            "progress": record.progress,
            "message": record.message,
            "created_at": _time(record.created_at),
            "started_at": _time(record.started_at),
            "ended_at": _time(record.ended_at),
            "expires_at": _time(record.expires_at),
            "result_url": f"{self.url(prefix, record.id)}/result" if succeeded else None,
            "error": record.error,
        }

    @staticmethod
    def url(prefix: str, job_id: str) -> str:
        return f"{prefix}/jobs/{job_id}"

    def _get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id) if _JOB_ID.fullmatch(job_id) else None

    def _wait(self, record: JobRecord, seconds: float) -> JobRecord:
        deadline = time.monotonic() + seconds
        while not record.ended and time.monotonic() < deadline:
            seen = self._changes  # read before the record: a change after it is not slept through
            record = self.records.get(record.id, include_deleted=True) or record
            if not record.ended:
                self._pause(min(self._poll, max(0.0, deadline - time.monotonic())), seen)
        return record

    def _event_stream(self, job_id: str, after: int) -> Iterator[bytes]:
        quiet = time.monotonic()
        while True:
            seen = self._changes
            events = self.records.events(job_id, after)
            for seq, data in events:
                after = seq
                yield f"id: {seq}\nevent: {data['status']}\ndata: {json.dumps({'id': job_id, **data})}\n\n".encode()
                if data["status"] in FINAL:
                    return
            if not events:
                record = self.records.get(job_id, include_deleted=True)
                if record is None or (record.ended and after >= record.seq):
                    return
                if time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield b": keep-alive\n\n"  # a proxy must not take a long step for a dead connection
                self._pause(POLL, seen)
            else:
                quiet = time.monotonic()

    def _pause(self, seconds: float, seen: int | None = None) -> None:
        """Sleep ``seconds``, or until this process changes a job; at once if it changed one since
        :attr:`_changes` read ``seen``."""
        with self._changed:
            if seen is None or seen == self._changes:
                self._changed.wait(seconds)

    def _touch(self) -> None:
        with self._changed:
            self._changes += 1
            self._changed.notify_all()

    # --- running one job ----------------------------------------------------------------------------

    def run(self, record: JobRecord, owner: str) -> None:
        """Run a claimed job to its end and record how it ended (nothing if it was canceled)."""
        stored = record.request
        body = self.blobs.path(stored["body"]).read_bytes() if stored.get("body") else b""
        request = Request(
            "POST",
            _StoredHeaders(stored["headers"]),
            stored["query"].encode("latin-1"),
            body,
            framework="job",
        )
        outcome = self.service.prepare(record.pipeline, request)
        if isinstance(outcome, Reply):  # the pipeline is gone, or its arguments changed since
            self._end(record.id, owner, outcome)
            return
        last_report = 0.0

        def report(fraction: float | None, message: str | None) -> bool:
            nonlocal last_report
            now = time.monotonic()
            if now - last_report < 0.05 and fraction not in (0.0, 1.0):
                return self.records.is_canceled(record.id)  # many reports a second: only checked
            last_report = now
            try:
                canceled = self.records.report(record.id, fraction, message)
            except Unavailable:  # Redis away for a moment: the run goes on, its end is recorded later
                logger.warning("Job %s's progress could not be recorded", record.id)
                return False
            self._touch()
            return canceled

        with reporting(report):
            reply = outcome.run_sync(bounded=False)
        self._end(record.id, owner, reply)

    def _end(self, job_id: str, owner: str, reply: Reply) -> None:
        try:
            if reply.status_code >= 400:
                detail = _detail(reply)
                self.records.finish(job_id, owner, "failed", error={"status": reply.status_code, "detail": detail})
                return
            result = store_reply(self.blobs, reply).to_dict()
            # Bound the store before the job is seen to end: whoever reads the records next finds
            # the store as it will stay, not a result that is about to go.
            self._bound()
            if not self.records.finish(job_id, owner, "succeeded", result=result):
                logger.info("Job %s ended after it was canceled; its result is thrown away", job_id)
        except Exception as exc:
            logger.error("Job %s could not be stored", job_id, exc_info=exc)
            error = {"status": 500, "detail": "The job's result could not be stored."}
            self.records.finish(job_id, owner, "failed", error=error)
        finally:
            self._touch()
            reply.close()

    def _collect(self) -> None:
        """Drop expired records, and the blobs nobody refers to any more (no job, no cached answer)."""
        unused = set(self.records.expire()) - self.records.digests_in_use()
        for digest in unused - cached_digests(self.service.state_dir):
            self.blobs.delete(digest)
        # Past the store's size bound, the least recently used blobs go (a job whose result goes
        # answers 410, a cached answer runs again), never a queued job's request.
        self._last_shrink = time.monotonic()
        evicted = self.blobs.shrink(self.service.store_max_bytes, self.records.pending_digests())
        if evicted:
            logger.info("The result store was over its bound: %d least recently used blobs deleted", len(evicted))

    def _bound(self) -> None:
        # After a result is stored, at most every few seconds: a burst of large results cannot
        # take the disk while waiting for the minute's collection.
        if time.monotonic() - self._last_shrink > SHRINK_EVERY:
            self._collect()


class EmbeddedRunner:
    """The default runner: ``workers`` threads in each server process take queued jobs from the
    shared records, one at a time each. A job whose process died is queued again (or failed)."""

    def __init__(self, jobs: Jobs, workers: int) -> None:
        self.jobs = jobs
        self.workers = max(1, workers)
        self.owner = new_owner()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._running: set[str] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.jobs.records.recover(owner_alive, STALE_AFTER, ATTEMPTS)
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"dualserve-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self._tend, name="dualserve-jobs-tend", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self.notify()

    def notify(self, job_id: str | None = None) -> None:
        with self._wake:
            self._wake.notify()

    def _work(self) -> None:
        registry = self.jobs.service.registry
        pipelines = tuple(registry.pipelines)
        while not self._stopping.is_set():
            if registry.pending:  # async setup() still to run on the server's loop: not ready
                self._stopping.wait(0.1)
                continue
            try:
                record = self.jobs.records.claim(self.owner, pipelines)
            except Exception:
                logger.exception("The job runner could not read the job records")
                record = None
            if record is None:
                with self._wake:
                    self._wake.wait(0.5)  # a job queued by another process is found by polling
                continue
            self._running.add(record.id)
            self.jobs._touch()  # "running": a waiter or an event stream in this process sees it now
            try:
                self.jobs.run(record, self.owner)
            except Exception:
                logger.exception("Job %s failed in the runner", record.id)
            finally:
                self._running.discard(record.id)

    def _tend(self) -> None:
        # Heartbeats for this process's jobs; other processes' dead jobs recovered; old ones dropped.
        last_collect = 0.0
        while not self._stopping.wait(HEARTBEAT):
            try:
                self.jobs.records.heartbeat(self.owner, list(self._running))
                if self.jobs.records.recover(owner_alive, STALE_AFTER, ATTEMPTS):
                    self.notify()
                if time.monotonic() - last_collect > 60:
                    last_collect = time.monotonic()
                    self.jobs._collect()
            except Exception:
                logger.exception("The job runner could not tend the job records")


def prefers_async(request: Request) -> bool:
    """``Prefer: respond-async`` (RFC 7240)."""
    return "respond-async" in _preferences(request)


def preferred_wait(request: Request) -> float:
    """``Prefer: wait=N`` in seconds (at most :data:`MAX_WAIT`), 0 if not asked."""
    value = _preferences(request).get("wait", "")
    try:
        return min(MAX_WAIT, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0


def _preferences(request: Request) -> dict[str, str]:
    found = {}
    for item in (request.headers.get("prefer") or "").split(","):
        name, _, value = item.split(";")[0].strip().partition("=")
        if name:
            found[name.lower()] = value.strip().strip('"')
    return found


class _StoredHeaders:
    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def get(self, key: str, /) -> str | None:
        return self.headers.get(key.lower())


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _detail(reply: Reply) -> Any:
    try:
        assert isinstance(reply.body, bytes)
        return json.loads(reply.body)["detail"]
    except Exception:
        return "The pipeline failed."


def _unknown(job_id: str) -> Reply:
    return error_reply(404, "Job not found (unknown, expired or deleted).")

    return True
