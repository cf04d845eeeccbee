"""The service every frontend puts on the wire: routes' decisions, runs, errors. No web framework.

An adapter builds a :class:`~dualserve.core.request.Request`, asks :meth:`Service.prepare` for a
:class:`Call` (or an immediate :class:`Reply`: 404, 405, 422 ...), then runs the call the way its
framework runs code: :meth:`Call.run_sync` in a worker thread, or :meth:`Call.run_async` on an
event loop with sync work sent to threads. Both end in the same Reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from typing import Any

from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from ..core.forms import FormTooLarge, is_form, parse_form
from ..core.framework_responses import read_framework_response
from ..core.header_fields import checked
from ..core.http import render
from ..core.images import DEFAULT_MAX_IMAGE_PIXELS, bomb_detail, is_bomb, limit_pixels
from ..core.limits import Slots
from ..core.negotiation import negotiate
from ..core.reply import (
    JSON_HEADERS,
    Reply,
    body_malformed,
    body_too_large,
    discard,
    discard_late,
    error_reply,
    for_method,
    json_reply,
)
from ..core.request import Request
from ..core.returns import PassthroughResult, Result, StreamResult, encode_json, is_blocking, path_result, resolve
from ..core.streams import prime_async, prime_sync
from ..exceptions import HTTPError, ResolveError
from ..uploads import UploadFile
from .aio import portal
from .openapi import build_document
from .pages import asset, page
from .pipelines import Pipeline, Registry, is_valid_name

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_THREADS", "LOOP_PARSE_LIMIT", "Call", "Service", "ToThread"]

logger = logging.getLogger("dualserve")

#: How an async frontend runs a blocking function: Starlette's ``run_in_threadpool``, for one.
ToThread = Callable[..., Awaitable[Any]]

#: 64 MiB: room for large image uploads, small enough that one request cannot exhaust memory.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
#: Threads per pool: a sync stream through the Flask mount holds one for its whole length.
DEFAULT_THREADS = 64
#: The largest request body an async frontend parses on its event loop (about 0.1 ms of JSON);
#: a larger one is parsed in a thread, so a 32 MB form never stops the loop.
LOOP_PARSE_LIMIT = 64 * 1024
STATUS_METHODS = ("GET", "HEAD")
_FAILED = "Pipeline execution failed"
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
    :param threads: sync runs at once on each frontend of an ASGI server: the FastAPI adapter's
        pool, and the WSGI calls of the Flask app mounted inside FastAPI (also the timeout's pool).
    :param timeout: seconds a pipeline may take to produce its answer (a stream: its first chunk);
        past it the client gets a 504 JSON, and whatever the pipeline returns later is discarded.
    :param max_streams: streams this process may send at once; one more gets a 503 JSON with
        ``Retry-After`` before its generator runs (``None``: no limit).
    :param max_image_pixels: the largest image, in pixels, that Pillow decodes in this process (an
        upload over it is a 413 JSON when opened) and that a pipeline may return.
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
    ) -> None:
        if max_body_size < 0 or threads < 1 or (timeout is not None and timeout <= 0) or max_image_pixels < 1:
            raise ValueError(
                "max_body_size must be 0 or more, threads and max_image_pixels 1 or more, and timeout above 0."
            )
        limit_pixels(max_image_pixels)
        self.registry = registry
        self.debug = debug
        self.max_body_size = max_body_size
        self.threads = threads
        self.timeout = timeout
        self.streams = Slots(max_streams)
        self._timed_pool: ThreadPoolExecutor | None = None
        self._contexts: dict[str, Callable[[], AbstractContextManager[object]]] = {}
        self._documents: dict[str, bytes] = {}

    def provide_context(self, framework: str, context: Callable[[], AbstractContextManager[object]]) -> None:
        """Register the context a wrapper that uses ``framework`` ("werkzeug") needs to run, such as a
        Flask request context for ``flask.send_file``; the Flask adapter registers its own."""
        self._contexts[framework] = context

    def context_for(self, pipeline: Pipeline) -> AbstractContextManager[object]:
        if pipeline.uses_flask and "werkzeug" in self._contexts:
            # A bare context, the same on every frontend: send_file then answers a plain 200 and
            # the core applies Range and conditional requests as for any file.
            return self._contexts["werkzeug"]()
        return contextlib.nullcontext()

    def body_too_large(self) -> Reply:
        """413: the body is over ``max_body_size`` (said by Content-Length, or found while reading)."""
        return body_too_large(self.max_body_size)

    def body_malformed(self, exc: Exception) -> Reply:
        """400 for a body the server's input stream refused, or the body-incomplete 400 when that
        refusal says the client left: gunicorn raises its ParseException subclasses (a bad chunk
        size or trailer) and NoMoreData inside ``read()``, Werkzeug's dev server ``OSError``."""
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ == "NoMoreData":
            return self.body_incomplete()
        return body_malformed(str(exc))

    def openapi(self, request: Request, prefix: str) -> Reply:
        """``GET /openapi.json``: the one document, with this frontend's mount ``prefix`` as server."""
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        if prefix not in self._documents:
            self._documents[prefix] = encode_json(build_document(self.registry, prefix))
        body = self._documents[prefix]
        headers = [*JSON_HEADERS, ("content-length", str(len(body)))]
        return for_method(Reply(200, headers, body), request.method)

    def page(self, request: Request, name: str, filename: str | None = None) -> Reply:
        """``/docs`` and ``/ui``, and the files they load from ``/docs/...`` and ``/ui/...``."""
        path = page(name) if filename is None else asset(name, filename)
        if path is None:
            return for_method(error_reply(404, "Not Found"), request.method)
        if request.method not in STATUS_METHODS:
            return method_not_allowed(STATUS_METHODS)
        # Pages must follow a new version at once; the assets they load may be cached for a day.
        # Our own pages run our own scripts only (the sandbox that HTML results get would stop them).
        headers = (("content-security-policy", PAGE_POLICY),) if filename is None else ()
        result = path_result(path, None, filename=None, max_age=None if filename is None else 86400, headers=headers)
        return render(result, request)

    def timed_out(self, request: Request) -> Reply:
        """504: the pipeline did not answer within ``timeout``."""
        return for_method(
            error_reply(504, f"The pipeline did not answer within {self.timeout:g} seconds."), request.method
        )

    def run_in_pool(self, function: Callable[[], Reply]) -> Future[Reply]:
        if self._timed_pool is None:
            self._timed_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dualserve-timed")
        return self._timed_pool.submit(contextvars.copy_context().run, function)

    def too_many_streams(self) -> HTTPError:
        """503: every stream slot is taken; the client may retry in a second."""
        detail = f"The server is sending its limit of {self.streams.limit} streams; try again shortly."
        return HTTPError(503, detail, {"Retry-After": "1"})

    def body_incomplete(self) -> Reply:
        """400: the body ended before its Content-Length, so the client is gone or broken."""
        return error_reply(400, "The request body ended before its Content-Length.")

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
        reply = json_reply(200, content)
        if request.method == "HEAD":
            reply.body = b""
        return reply

    def prepare(self, name: str, request: Request) -> Call | Reply:
        """Find the pipeline and validate the arguments, or answer right away."""
        outcome = self._prepare(name, request)
        return outcome if isinstance(outcome, Call) else for_method(outcome, request.method)

    def _prepare(self, name: str, request: Request) -> Call | Reply:
        pipeline = self.registry.pipelines.get(name)
        if pipeline is None:
            if name in self.registry.failures:
                return error_reply(503, f"Pipeline {name!r} failed to load; see GET /status and the server log.")
            # The name is echoed only when it could be a pipeline's: an answer never repeats markup
            # or kilobytes a client put in the URL.
            shown = f" {name!r}" if len(name) <= 100 and is_valid_name(name) else ""
            return error_reply(404, f"Pipeline{shown} not found.")
        if request.method not in pipeline.methods:
            return method_not_allowed(pipeline.methods)
        cleanups: list[Callable[[], object]] = []
        try:
            if request.method != "POST":
                arguments = pipeline.parameters.from_pairs([*request.query, *request.path_params], "query")
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
                arguments = pipeline.parameters.from_pairs(form, "body")
            else:
                arguments = pipeline.parameters.from_json(request.body)
        except HTTPError as exc:
            return error_reply(exc.status_code, exc.detail, list(exc.headers.items()), cleanups)
        return Call(self, pipeline, arguments, request, cleanups)

    def failure(self, pipeline: Pipeline, exc: BaseException) -> Reply:
        """The JSON answer for an exception raised while running or resolving."""
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


def method_not_allowed(allowed: tuple[str, ...]) -> Reply:
    return error_reply(405, "Method Not Allowed", [("allow", ", ".join(allowed))])


@dataclasses.dataclass
class Call:
    """A validated request for one pipeline, ready to run."""

    service: Service
    pipeline: Pipeline
    arguments: dict[str, Any]
    request: Request
    #: Closes the request's uploads once the response is over.
    cleanups: list[Callable[[], object]] = dataclasses.field(default_factory=list)

    def run_sync(self) -> Reply:
        """Run in a worker thread: ``run_api``, resolution, the first chunk of a stream, the HTTP rules."""
        try:
            with self.service.context_for(self.pipeline):
                value = self.pipeline.invoke(self.arguments)
            reply = self._finish_sync(value)
        except Exception as exc:
            reply = for_method(self.service.failure(self.pipeline, exc), self.request.method)
        reply.cleanups += self.cleanups
        return reply

    def run_sync_within(self) -> Reply:
        """:meth:`run_sync`, bounded by the service's timeout (the Flask side)."""
        if self.service.timeout is None:
            return self.run_sync()
        future = self.service.run_in_pool(self.run_sync)
        try:
            return future.result(self.service.timeout)
        except FutureTimeout:
            future.add_done_callback(lambda done: discard(done.result()))
            logger.error("Pipeline %r did not answer within %g s", self.pipeline.name, self.service.timeout)
            return self.service.timed_out(self.request)

    async def run_async_within(self, to_thread: ToThread) -> Reply:
        """:meth:`run_async`, bounded by the service's timeout (the FastAPI side)."""
        if self.service.timeout is None:
            return await self.run_async(to_thread)
        task = asyncio.ensure_future(self.run_async(to_thread))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.service.timeout)
        except asyncio.CancelledError:  # the request was cancelled; the run goes on without it
            task.add_done_callback(discard_late)
            raise
        if task in done:
            return task.result()
        # The thread cannot be stopped; what it answers later is closed and thrown away.
        task.add_done_callback(discard_late)
        logger.error("Pipeline %r did not answer within %g s", self.pipeline.name, self.service.timeout)
        return self.service.timed_out(self.request)

    async def run_async(self, to_thread: ToThread) -> Reply:
        """Run on an event loop; sync ``run_api`` and image encoding go through ``to_thread``."""
        if not self.pipeline.is_async:
            reply: Reply = await to_thread(self.run_sync)
            return reply
        reply = await self._run_on_loop(to_thread)
        reply.cleanups += self.cleanups
        return reply

    async def _run_on_loop(self, to_thread: ToThread) -> Reply:
        try:
            value = await portal.acall(self.pipeline.function(**self.arguments))
            if is_blocking(value):
                reply: Reply = await to_thread(self._finish_sync, value)
                return reply
            result = self._resolve(value)
            if isinstance(result, StreamResult):
                if isinstance(result.chunks, AsyncIterator):
                    result = await prime_async(
                        dataclasses.replace(result, chunks=portal.aiterate(result.chunks)), self._label
                    )
                else:
                    result = await to_thread(prime_sync, result, self._label)
            return self._render(result)
        except Exception as exc:
            return for_method(self.service.failure(self.pipeline, exc), self.request.method)

    def _finish_sync(self, value: Any) -> Reply:
        result = self._resolve(value)
        if isinstance(result, StreamResult):
            if isinstance(result.chunks, AsyncIterator):
                result = dataclasses.replace(result, chunks=portal.iterate(result.chunks))
            result = prime_sync(result, self._label)
        return self._render(result)

    @property
    def _label(self) -> str:
        return f"The stream of pipeline {self.pipeline.name!r}"

    def _resolve(self, value: Any) -> Result:
        result = resolve(value, self.pipeline.media_types)
        if isinstance(result, PassthroughResult):
            result = read_framework_response(result.response, self.cleanups) or result
        result = negotiate(result, self.request, self.pipeline.name, self.pipeline.controls)
        if isinstance(result, StreamResult):
            self._hold_stream_slot(result)
        return result

    def _hold_stream_slot(self, result: StreamResult) -> None:
        # Checked before the first chunk is pulled, so a refused generator has not run at all;
        # it is still closed (a cleanup, so an async one is closed on its own loop).
        chunks = result.chunks
        if not self.service.streams.take():
            close = getattr(chunks, "aclose", None) or getattr(chunks, "close", None)
            if close is not None:
                self.cleanups.append(close)
            raise self.service.too_many_streams()
        # Given back when the response is over: finished, cut off, answered by HEAD, or discarded.
        self.cleanups.append(self.service.streams.give_back)

    def _render(self, result: Result) -> Reply:
        if isinstance(result, PassthroughResult):
            if result.framework != self.request.framework:
                raise ResolveError(
                    f"run_api returned a {result.framework} {type(result.response).__name__}, which this frontend "
                    f"cannot send; return bytes, a Path, an iterator or a Media to be served by every frontend."
                )
            return Reply(result.status_code, [], passthrough=result.response)
        return render(result, self.request)
