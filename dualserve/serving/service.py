"""The service every frontend puts on the wire: the routes' endpoints, the pool, errors. No web framework.

A frontend matches a path against :data:`~dualserve.core.routes.ROUTES`, builds a
:class:`~dualserve.core.request.Request` (reading the body with :mod:`~dualserve.serving.bodies`
for a route that takes one), and asks :meth:`Service.answer`. The answer is a finished
:class:`Reply` (a 404, 405, 422, ``/status`` ...), or a :class:`~dualserve.serving.runs.Call` that
the frontend runs as its framework runs code: :meth:`Call.run_sync` from a thread, or
:meth:`Call.run_async` from an event loop. Every sync piece of work dualserve hands to a thread
goes to the service's one pool, of ``threads`` threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from ..core.forms import FormTooLarge, is_form, parse_form
from ..core.header_fields import checked
from ..core.http import render
from ..core.images import DEFAULT_MAX_IMAGE_PIXELS, bomb_detail, is_bomb, limit_pixels
from ..core.jsonify import flask_json
from ..core.keys import needs_key
from ..core.limits import Slots
from ..core.reply import (
    JSON_HEADERS,
    Reply,
    discard_late,
    error_reply,
    for_method,
    json_reply,
    method_not_allowed,
)
from ..core.request import Request
from ..core.returns import JSONResult, Result, encode_json, path_result
from ..core.routes import Route
from ..exceptions import Canceled, HTTPError, ResolveError
from ..media import Media
from ..store import JOBS_FILE, Store, Unavailable
from ..uploads import UploadFile
from ..wrapper import declared_cache_ttl
from .aio import portal
from .cache import Cache, CachedRun
from .config import default_state_dir
from .edge import Edge
from .jobs import EmbeddedRunner, JobRunner, Jobs, prefers_async
from .metrics import render as render_metrics
from .openapi import build_document
from .pages import asset, page
from .pipelines import Pipeline, Registry, is_valid_name
from .runs import Call

if TYPE_CHECKING:
    from ..cluster.connection import Cluster

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_THREADS", "LOOP_PARSE_LIMIT", "Call", "Service"]

logger = logging.getLogger("dualserve")
T = TypeVar("T")

#: 64 MiB: room for large image uploads, small enough that one request cannot exhaust memory.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
#: Threads per pool: a sync stream through the Flask mount holds one for its whole length.
DEFAULT_THREADS = 64
#: The largest request body an async frontend parses on its event loop (about 0.1 ms of JSON);
#: a larger one is parsed in a thread, so a 32 MB form never stops the loop.
LOOP_PARSE_LIMIT = 64 * 1024
STATUS_METHODS = ("GET", "HEAD")
_FAILED = "Pipeline execution failed"
#: Seconds a job and its result are kept (``--result-ttl``).
DEFAULT_RESULT_TTL = 3600.0
#: Bytes the result store's blobs may take (``--store-max-bytes``); past it, least recently used first.
DEFAULT_STORE_MAX_BYTES = 4 * 1024**3
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; frame-src 'self' blob:; connect-src 'self'; frame-ancestors 'self'"
)
_ERROR_RESERVED = frozenset({"content-type", "content-length", "transfer-encoding"})


class Service:
    """What every frontend serves for one registry.

    :param registry: the pipelines.
    :param debug: put the exception's type and message in 500 answers (never the traceback).
    :param max_body_size: the largest request body accepted, in bytes; larger ones get 413.
    :param threads: the service's pool: every sync piece of work dualserve hands to a thread (a
        sync ``run_api`` from FastAPI or under a timeout, image encoding, a sync stream's chunks,
        file reads and closes on FastAPI); the Flask mount inside FastAPI has as many threads.
    :param timeout: seconds a pipeline may take to produce its answer (a stream: its first chunk);
        past it the client gets a 504 JSON, and whatever the pipeline returns later is discarded.
    :param max_streams: streams this process may send at once; one more gets a 503 JSON with
        ``Retry-After`` before its generator runs (``None``: no limit).
    :param max_image_pixels: the largest image, in pixels, that Pillow decodes in this process (an
        upload over it is a 413 JSON when opened) and that a pipeline may return.
    :param state_dir: where job records and stored results live, shared by the server's worker
        processes (``$DUALSERVE_STATE_DIR``, else ``.dualserve`` in the working directory).
    :param result_ttl: seconds a job and its result are kept.
    :param job_workers: jobs this process runs at once.
    :param cache_ttl: seconds the answers of every pipeline are served from the store for the same
        arguments and representation (a wrapper's own ``@cached`` wins); ``None``: only those of
        pipelines with ``@cached``.
    :param store_max_bytes: the bytes the result store's blobs may take; past it the least recently
        used go (a job's result then answers 410), never a queued job's request.
    :param cors_origins: origins a browser may call from (``*``: any); none: no CORS headers.
    :param api_keys: keys the pipeline and job routes need (``Authorization: Bearer`` or
        ``X-API-Key``); none: open.
    :param rate_limit: requests per key, else per client address (``60/minute``); counted in
        Redis with a cluster, so every process counts together.
    :param cluster: scaled out (docs/contract.md section 7): the Redis broker and shared store. An
        API process's service then runs nothing itself: ``/run`` and jobs go to the workers.
    """

    def __init__(
        self,
        registry: Registry,
        debug: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        threads: int = DEFAULT_THREADS,
        timeout: float | None = None,
        max_streams: int | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        state_dir: str | os.PathLike[str] | None = None,
        result_ttl: float = DEFAULT_RESULT_TTL,
        job_workers: int = 1,
        cache_ttl: float | None = None,
        store_max_bytes: int = DEFAULT_STORE_MAX_BYTES,
        cluster: Cluster | None = None,
        cors_origins: Sequence[str] = (),
        api_keys: Sequence[str] = (),
        rate_limit: str | None = None,
    ) -> None:
        if result_ttl <= 0 or job_workers < 1 or store_max_bytes < 0:
            raise ValueError("result_ttl must be above 0, job_workers 1 or more, store_max_bytes 0 or more.")
        if max_body_size < 0 or threads < 1 or (timeout is not None and timeout <= 0) or max_image_pixels < 1:
            raise ValueError(
                "max_body_size must be 0 or more, threads and max_image_pixels 1 or more, and timeout above 0."
            )
        if cache_ttl is not None and not cache_ttl > 0:
            raise ValueError("cache_ttl must be above 0, or None.")
        limit_pixels(max_image_pixels)
        self.registry = registry
        self.debug = debug
        self.max_body_size = max_body_size
        self.threads = threads
        self.timeout = timeout
        self.streams = Slots(max_streams)
        self._pool: ThreadPoolExecutor | None = None
        self._contexts: dict[str, Callable[[], AbstractContextManager[object]]] = {}
        self._documents: dict[str, bytes] = {}
        self.state_dir = Path(state_dir if state_dir is not None else default_state_dir())
        self.result_ttl = result_ttl
        self.job_workers = job_workers
        self.cache_ttl = cache_ttl
        self._cache: Cache | None = None
        self._cache_ttls: dict[str, tuple[Pipeline, float | None]] = {}
        self.store_max_bytes = store_max_bytes
        self._store: Store | None = None
        self._jobs: Jobs | None = None
        self._jobs_lock = threading.Lock()
        self.cluster = cluster
        self.edge = Edge(cors_origins, api_keys, rate_limit, cluster.broker if cluster is not None else None)
        #: Whether /run and jobs run elsewhere (an API process of a cluster holds no model).
        self.relays = cluster is not None and cluster.role == "api"
        if (cluster is None and (self.state_dir / JOBS_FILE).exists()) or self.relays:
            # Jobs recorded before a restart are run again now, not on first use; scaled out, the
            # API process's runner sends again the jobs of silent workers and collects expired ones.
            self.jobs  # noqa: B018

    def provide_context(self, framework: str, context: Callable[[], AbstractContextManager[object]]) -> None:
        """Register the context a wrapper that uses ``framework`` ("werkzeug") needs to run, such as a
        Flask request context for ``flask.send_file``; the Flask adapter registers its own."""
        self._contexts[framework] = context

    def context_for(self, pipeline: Pipeline) -> AbstractContextManager[object]:
        if not pipeline.uses_flask:
            return contextlib.nullcontext()
        if "werkzeug" not in self._contexts:
            # Served by FastAPI alone: the wrapper imported Flask, so a bare app gives the context.
            import flask

            self._contexts["werkzeug"] = flask.Flask("dualserve").test_request_context
        # A bare context, the same on every frontend: send_file then answers a plain 200 and
        # the core applies Range and conditional requests as for any file.
        return self._contexts["werkzeug"]()

    async def start(self) -> None:
        """Await the async ``setup()`` calls left for the server's loop (see :mod:`.aio`)."""
        await portal.acall(self.registry.start())

    # --- the pool -------------------------------------------------------------------------------

    def submit(self, function: Callable[[], T]) -> Future[T]:
        """Run ``function`` in the pool, in a copy of this context."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dualserve")
        return self._pool.submit(contextvars.copy_context().run, function)

    async def to_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Await ``function(*args)`` run in the pool. A plain executor hop costs about a third of
        ``anyio.to_thread.run_sync``'s (13 against 39 microseconds here, 32 requests in flight)."""
        future = asyncio.wrap_future(self.submit(lambda: function(*args)))
        try:
            # Shielded: a running thread cannot be stopped, and the reply it makes must not be lost.
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # the request was cancelled (a deadline middleware, shutdown)
            future.add_done_callback(self.discard_late)
            raise

    def discard_late(self, future: asyncio.Future[Any]) -> None:
        """:func:`~dualserve.core.reply.discard_late`, closing in this pool."""
        discard_late(future, self.to_thread)

    # --- the endpoints --------------------------------------------------------------------------

    def answer(self, route: Route, arguments: dict[str, str], request: Request, prefix: str = "") -> Reply | Call:
        """The answer of ``route``'s endpoint, HEAD and bodiless statuses applied, or the
        :class:`Call` to run. ``prefix`` is where the frontend is mounted."""
        try:
            refused = self.edge.admit(route, request)
            outcome = refused if refused is not None else self._answer(route, arguments, request, prefix)
        except Unavailable as exc:
            logger.error("The shared store cannot be reached: %s", exc)
            outcome = error_reply(503, "The job store cannot be reached; try again shortly.", [("retry-after", "5")])
        return outcome if isinstance(outcome, Call) else for_method(outcome, request.method)

    def _answer(self, route: Route, arguments: dict[str, str], request: Request, prefix: str) -> Reply | Call:
        outcome: Reply | Call
        if route.endpoint == "run":
            path_params = tuple((key, value) for key, value in arguments.items() if key != "pipeline")
            if path_params:
                request = dataclasses.replace(request, path_params=path_params)
            if request.method == "POST" and prefers_async(request) and not path_params:
                # RFC 7240: the client would rather have a job than wait; said so in the answer.
                outcome = self.jobs.submit(arguments["pipeline"], request, prefix)
                if outcome.status_code in (201, 202):
                    outcome.headers.append(("preference-applied", "respond-async"))
            else:
                outcome = self._prepare(arguments["pipeline"], request, route)
        elif route.endpoint == "submit":
            outcome = self.jobs.submit(arguments["pipeline"], request, prefix)
        elif route.endpoint == "job":
            outcome = self.jobs.status(arguments["job"], request, prefix)
        elif route.endpoint == "job_result":
            outcome = self.jobs.result(arguments["job"], request)
        elif route.endpoint == "job_events":
            outcome = self.jobs.events(arguments["job"], request)
        elif route.endpoint == "status":
            outcome = self.status(request)
        elif route.endpoint == "metrics":
            outcome = self.metrics(request)
        elif route.endpoint == "home":
            outcome = self.home(request)
        elif route.endpoint == "openapi":
            outcome = self.openapi(request, prefix)
        elif route.endpoint == "page":
            outcome = self.page(request, arguments["page"], arguments.get("filename"))
        else:
            raise LookupError(f"No endpoint called {route.endpoint!r}.")
        return outcome

    def finish(
        self, route: Route, arguments: dict[str, str], request: Request | None, reply: Reply, arrived: int
    ) -> Reply:
        """The reply a frontend sends, with the edge's headers and measures (see :mod:`.edge`)."""
        name = arguments.get("pipeline", "")
        return self.edge.finish(route, name if name in self.registry.pipelines else "", request, reply, arrived)

    def metrics(self, request: Request) -> Reply:
        """``GET /metrics``: Prometheus text, summed over this server's processes."""
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        body, media_type = render_metrics(self._job_counts)
        return Reply(200, [("content-type", media_type), ("content-length", str(len(body)))], body)

    def _job_counts(self) -> dict[str, int]:
        if self.cluster is None and self._store is None and not (self.state_dir / JOBS_FILE).exists():
            return {}  # no job was ever recorded here: nothing to open
        return self.store.records.counts()

    def blocks(self, route: Route, request: Request) -> bool:
        """Whether answering ``request`` on ``route`` touches the disk or waits (an event loop
        hands it to a thread): a blocking route, or a ``/run`` that asks for a job instead."""
        if route.endpoint == "run" and (self.relays or (request.method == "POST" and prefers_async(request))):
            return True  # a relayed answer waits on Redis; a job is recorded
        if self.edge.blocks and needs_key(route.endpoint):
            return True  # the rate limit's counters are in Redis
        return route.blocking

    @property
    def store(self) -> Store:
        """The result store in this service's state directory, opened on first use."""
        with self._jobs_lock:
            if self._store is None:
                self._store = Store(self.state_dir) if self.cluster is None else self.cluster.store()
            return self._store

    @property
    def jobs(self) -> Jobs:
        """The jobs of this service's store, its runner started on first use."""
        store = self.store
        with self._jobs_lock:
            if self._jobs is None:
                self._jobs = Jobs(self, store, self.result_ttl, self._runner)
            return self._jobs

    def _runner(self, jobs: Jobs) -> JobRunner | None:
        if self.cluster is None:
            return EmbeddedRunner(jobs, self.job_workers)
        if self.cluster.role == "worker":
            return None  # Celery delivers the jobs (dualserve.cluster.app.run_job)
        from ..cluster.runner import CeleryRunner

        return CeleryRunner(jobs, self.cluster)

    def run_here(self, name: str, request: Request, route: Route | None = None) -> Reply:
        """A worker's answer to a ``/run`` call an API process relays: validated and run here."""
        outcome = self._prepare(name, request, route, here=True)
        return outcome.run_sync() if isinstance(outcome, Call) else outcome

    @property
    def cache(self) -> Cache:
        """The cached answers in this service's state directory, opened on first use."""
        with self._jobs_lock:
            if self._cache is None:
                self._cache = Cache(self.state_dir)
            return self._cache

    def cached_run(self, call: Call) -> CachedRun | None:
        """The cache's part in ``call``'s run, or None if its pipeline is not cached: nothing is
        opened or read for it, and its run has no more steps than without a cache."""
        pipeline = call.pipeline
        known = self._cache_ttls.get(pipeline.name)
        if known is None or known[0] is not pipeline:
            ttl = declared_cache_ttl(pipeline.function)
            known = self._cache_ttls[pipeline.name] = (pipeline, self.cache_ttl if ttl is None else ttl)
        ttl = known[1]
        return None if ttl is None else CachedRun(self, call, ttl)

    def openapi(self, request: Request, prefix: str) -> Reply:
        """``GET /openapi.json``: the one document, with this frontend's mount ``prefix`` as server."""
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        if prefix not in self._documents:
            keyed = self.edge.keys is not None
            self._documents[prefix] = encode_json(build_document(self.registry, prefix, keyed))
        body = self._documents[prefix]
        return Reply(200, [*JSON_HEADERS, ("content-length", str(len(body)))], body)

    def page(self, request: Request, name: str, filename: str | None = None) -> Reply:
        """``/docs`` and ``/ui``, and the files they load from ``/docs/...`` and ``/ui/...``."""
        path = page(name) if filename is None else asset(name, filename)
        if path is None:
            return error_reply(404, "Not Found")
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        # Pages must follow a new version at once; the assets they load may be cached for a day.
        # Our own pages run our own scripts only (the sandbox that HTML results get would stop them).
        headers = (("content-security-policy", PAGE_POLICY),) if filename is None else ()
        result = path_result(path, None, filename=None, max_age=None if filename is None else 86400, headers=headers)
        return render(result, request)

    def home(self, request: Request) -> Reply:
        """``GET /``: a person who opens the server's address is led to the playground. The
        relative ``Location`` resolves under whatever prefix the frontend is mounted at."""
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        return error_reply(307, "The playground is at ui; the API's documentation at docs.", [("location", "ui")])

    def timed_out(self, request: Request) -> Reply:
        """504: the pipeline did not answer within ``timeout``."""
        return for_method(
            error_reply(504, f"The pipeline did not answer within {self.timeout:g} seconds."), request.method
        )

    def too_many_streams(self) -> HTTPError:
        """503: every stream slot is taken; the client may retry in a second."""
        detail = f"The server is sending its limit of {self.streams.limit} streams; try again shortly."
        return HTTPError(503, detail, {"Retry-After": "1"})

    def no_room(self, exc: OSError) -> Reply:
        """507: the request's upload could not be stored (a full disk, a file size limit)."""
        logger.error("An upload could not be spooled to a temporary file: %s", exc)
        return error_reply(507, f"The server could not store the upload: {exc.strerror or exc}.")

    def malformed_form(self) -> Reply:
        """422, in the shape of a malformed JSON body, for a form body its parser refused."""
        problem = {"loc": ["body"], "msg": "The form body could not be parsed.", "type": "form_invalid"}
        return error_reply(422, [problem])

    def status(self, request: Request) -> Reply:
        """``GET /status``: the served pipelines and the ones that failed to load."""
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        content = {
            "status": "ok",
            "pipelines": sorted(self.registry.pipelines),
            "failed": self.registry.failures,
        }
        return json_reply(200, content)

    def prepare(self, name: str, request: Request) -> Call | Reply:
        """Find pipeline ``name`` and validate the request's arguments: the :class:`Call` to run,
        or the answer right away (404, 405, 422 ...). Never relayed: a job is run where it is taken."""
        outcome = self._prepare(name, request, here=True)
        return outcome if isinstance(outcome, Call) else for_method(outcome, request.method)

    def _prepare(self, name: str, request: Request, route: Route | None = None, here: bool = False) -> Call | Reply:
        pipeline = self.registry.pipelines.get(name)
        if pipeline is None:
            if name in self.registry.failures:
                return error_reply(503, f"Pipeline {name!r} failed to load; see GET /status and the server log.")
            # The name is echoed only when it could be a pipeline's: an answer never repeats markup
            # or kilobytes a client put in the URL.
            shown = f" {name!r}" if len(name) <= 100 and is_valid_name(name) else ""
            return error_reply(404, f"Pipeline{shown} not found.")
        allowed = pipeline.methods
        if route is not None and route.methods is not None:  # a legacy route's own methods
            allowed = tuple(method for method in allowed if method in route.methods)
        if request.method not in allowed:
            return method_not_allowed(allowed)
        path = request.path_params
        cleanups: list[Callable[[], object]] = []
        try:
            if request.method != "POST":
                arguments = pipeline.parameters.from_pairs(request.query, "query", path)
            elif is_form(request.headers.get("content-type")):
                try:
                    form = parse_form(request.body, request.headers.get("content-type") or "")
                except FormTooLarge as exc:
                    return error_reply(413, str(exc))
                except (ValueError, WerkzeugHTTPException):
                    return self.malformed_form()
                except OSError as exc:  # a large upload is spooled to a temp file; the disk may be full
                    return self.no_room(exc)
                cleanups += [value.stream.close for _, value in form if isinstance(value, UploadFile)]
                arguments = pipeline.parameters.from_pairs(form, "body", path)
            else:
                arguments = pipeline.parameters.from_json(request.body, path)
        except HTTPError as exc:
            return error_reply(exc.status_code, exc.detail, list(exc.headers.items()), cleanups)
        if self.relays and not here:
            # Checked here (a bad request never reaches the queue), run on a worker.
            for cleanup in cleanups:
                cleanup()
            assert self.cluster is not None
            return self.cluster.relay(name, request, route, self.timeout)
        if route is not None and route.json == "flask":
            return _FlaskJSONCall(self, pipeline, arguments, request, cleanups)
        return Call(self, pipeline, arguments, request, cleanups)

    def failure(self, pipeline: Pipeline, exc: BaseException) -> Reply:
        """The JSON answer for an exception raised while running or resolving."""
        if isinstance(exc, Canceled):  # a job canceled by DELETE /jobs/{id}: asked for, no failure
            logger.info("Pipeline %r stopped: its job was canceled", pipeline.name)
            return error_reply(409, "The job was canceled.")
        if isinstance(exc, HTTPError):
            try:
                headers = list(checked(exc.headers.items(), "HTTPError(headers=...)", _ERROR_RESERVED))
                return error_reply(exc.status_code, exc.detail, headers)
            except ResolveError as unsendable:  # a detail that is not JSON, a header no server can send
                exc = unsendable
        if is_bomb(exc):  # an image over the pixel limit, refused before it was decoded
            logger.warning("Pipeline %r refused an image: %s", pipeline.name, exc)
            return error_reply(413, bomb_detail())
        logger.error("Pipeline %r failed", pipeline.name, exc_info=exc)
        detail: Any = _FAILED
        if self.debug:
            detail = f"{_FAILED}: {type(exc).__name__}: {exc}"
        return error_reply(500, detail)


class _FlaskJSONCall(Call):
    """A run on a route added with ``json="flask"``: a JSON result is written as Flask's
    ``jsonify`` writes it (:mod:`~dualserve.core.jsonify`), from the value ``run_api`` returned."""

    def resolve(self, value: Any) -> Result:
        result = super().resolve(value)
        if isinstance(result, JSONResult):
            content = value.content if isinstance(value, Media) else value
            result = dataclasses.replace(result, body=flask_json(content, result.body))
        return result
