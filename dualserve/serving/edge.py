"""The edge policy (docs/contract.md section 8): what every request passes before its endpoint, and
what every answer gets, decided once for every frontend. No web framework.

Each frontend calls :meth:`Edge.admit` through :meth:`Service.answer` and :meth:`Edge.finish` on
the reply it is about to send, on its fast paths as on its framework's dispatch, so nothing here is
framework middleware (which would switch the fast paths off, and differ between Flask and FastAPI):

- before: a CORS preflight is answered (no key, no count: a browser sends neither); then a route
  that needs one checks the API key, then counts the request against the rate limit.
- after: ``X-Request-ID`` (the client's, or a new one), the CORS headers, and, once the last byte
  is sent (or the client left), the metrics, the span and the access log line.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from ..core.cors import CorsPolicy, add_to
from ..core.keys import ApiKeys, needs_key
from ..core.reply import FileBody, Reply, StreamBody
from ..core.request import Request
from ..core.routes import Route
from . import metrics, tracing
from .ratelimit import RateLimit

__all__ = ["Edge"]

access_log = logging.getLogger("dualserve.access")

#: A client's request id is echoed when it is a plain token: never a header injection, never a
#: kilobyte in every log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


class Edge:
    """The edge of one service.

    :param cors_origins: origins allowed to call from a browser (``*`` for any); none: no CORS.
    :param api_keys: keys the pipeline and job routes need; none: open.
    :param rate_limit: requests per key, or per client address without keys (``60/minute``).
    :param broker: a Redis URL: rate limits counted there, by every process together.
    :param pipelines: the names metrics may carry as labels (a label never takes a client's text).
    """

    def __init__(
        self,
        cors_origins: Sequence[str] = (),
        api_keys: Sequence[str] = (),
        rate_limit: str | None = None,
        broker: str | None = None,
        pipelines: Callable[[], object] | None = None,
    ) -> None:
        self.cors = CorsPolicy(cors_origins) if cors_origins else None
        self.keys = ApiKeys(api_keys) if api_keys else None
        self.limit = RateLimit(rate_limit, broker) if rate_limit else None
        #: Whether :meth:`admit` may wait on the network (shared rate-limit counters).
        self.blocks = self.limit is not None and self.limit.shared
        self._pipelines = pipelines

    def admit(self, route: Route, request: Request) -> Reply | None:
        """The answer instead of the endpoint's (a preflight's, 401, 429), or None to go on."""
        if self.cors is not None:
            preflight = self.cors.preflight(request)
            if preflight is not None:
                return preflight
        if not needs_key(route.endpoint):
            return None
        if self.keys is not None:
            refused = self.keys.check(request)
            if refused is not None:
                return refused
        if self.limit is not None:
            identity = self.keys.identity(request) if self.keys is not None else None
            return self.limit.hit(f"key:{identity}" if identity else f"address:{request.client}")
        return None

    def finish(
        self,
        route: Route,
        pipeline: str,
        request: Request | None,
        reply: Reply,
        arrived: int,
    ) -> Reply:
        """``reply`` with the edge's headers, and its measures taken at its last byte.

        :param pipeline: the pipeline the route names, if it is one being served ("" otherwise).
        :param arrived: ``time.time_ns()`` when the request arrived.
        """
        given = request.headers.get("x-request-id") if request is not None else None
        request_id = given if given is not None and _REQUEST_ID.fullmatch(given) else _new_request_id()
        if reply.passthrough is not None:
            return reply  # a framework's own response, sent as the wrapper made it
        reply.headers.append(("x-request-id", request_id))
        if self.cors is not None and request is not None:
            add_to(reply, self.cors.headers(request))  # the same names replaced (a preflight's), Vary merged
        endpoint = route.endpoint
        # No request: its body was refused as it was read (413, a malformed length), and only a
        # POST's body is read.
        method = request.method if request is not None else "POST"
        headers_get = request.headers.get if request is not None else _no_header
        path = request.path if request is not None else ""
        client = request.client if request is not None else ""
        span = tracing.start_span(method, route.path, pipeline, request_id, headers_get, arrived, path=path or None)
        counted = _Counted(reply)
        status = reply.status_code

        def done() -> None:
            seconds = (time.time_ns() - arrived) / 1e9
            metrics.observe_request(pipeline, endpoint, method, status, seconds, counted.sent)
            tracing.end_span(span, status, counted.sent)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    '%s "%s %s" %d %d %.3f %s', client or "-", method, path, status, counted.sent, seconds, request_id
                )

        reply.finished.append(done)  # inline at the last byte: no thread, no slower way to send
        return reply


def _no_header(name: str, /) -> str | None:
    return None


# A request id made here: 32 hex digits, random for the process and counted within it, so unique
# across processes and machines without a system call per request (uuid4 reads os.urandom).
_PROCESS_ID = os.urandom(10).hex()
_COUNT = itertools.count(1)


def _new_request_id() -> str:
    return f"{_PROCESS_ID}{next(_COUNT) & 0xFFFFFFFFFFFF:012x}"


def _forked() -> None:
    global _PROCESS_ID, _COUNT
    _PROCESS_ID, _COUNT = os.urandom(10).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_forked)  # a forked worker (gunicorn's) must not repeat its parent's ids


class _Counted:
    """The body bytes a reply sends: known for bytes and files, counted as a stream goes."""

    __slots__ = ("sent",)

    def __init__(self, reply: Reply) -> None:
        body = reply.body
        if isinstance(body, bytes):
            self.sent = len(body)
        elif isinstance(body, FileBody):
            self.sent = body.length
        else:
            self.sent = 0
            assert isinstance(body, StreamBody)
            chunks = body.chunks
            reply.body = StreamBody(self._sync(chunks) if isinstance(chunks, Iterator) else self._async(chunks))

    def _sync(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                self.sent += len(chunk)
                yield chunk
        finally:
            close: Any = getattr(chunks, "close", None)
            if close is not None:
                close()

    async def _async(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                self.sent += len(chunk)
                yield chunk
        finally:
            aclose: Any = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
