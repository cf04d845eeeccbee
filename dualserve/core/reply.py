"""``Reply``: the finished answer, which an adapter only moves onto its framework. Standard library only.

A Reply holds the final status, every header in order, and a body that is one of three things:
``bytes``, a :class:`FileBody` (a byte range of a file on disk), or a :class:`StreamBody` (an
iterator of ``bytes``, sync or async). Adapters must send exactly these headers and bytes and
call :meth:`Reply.close` (or ``aclose``) once the response is over, however it ended.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from .returns import encode_json
from .streams import closer

__all__ = [
    "JSON_HEADERS",
    "FileBody",
    "Reply",
    "StreamBody",
    "BODILESS",
    "adiscard",
    "body_malformed",
    "body_too_large",
    "discard",
    "discard_late",
    "error_reply",
    "for_method",
    "framework_error",
    "json_reply",
    "method_not_allowed",
    "malformed_detail",
    "too_large_detail",
    "wire_error",
    "without_body",
]

logger = logging.getLogger("dualserve")


@dataclass(frozen=True)
class FileBody:
    """``length`` bytes of ``path`` from ``start``."""

    path: Path
    start: int
    length: int


@dataclass(frozen=True)
class StreamBody:
    """Chunks of ``bytes``, already checked and encoded; never empty chunks."""

    chunks: Iterator[bytes] | AsyncIterator[bytes]


@dataclass
class Reply:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes | FileBody | StreamBody = b""
    #: A framework response to return untouched (a wrapper returned its frontend's own Response).
    passthrough: Any = None
    #: Run once the response is over, whether finished, aborted, answered by HEAD or 304.
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    #: Quick callbacks that never block (the edge's measures at the last byte), run inline where
    #: the response ended, after the cleanups: unlike a cleanup, one takes no thread, and a reply
    #: with only these keeps its frontend's fastest way to send a body.
    finished: list[Callable[[], object]] = field(default_factory=list)

    #: Runs an async cleanup (a Starlette background task, an async generator's ``aclose``) to its
    #: end from a thread: the serving layer sets its loop's (``asyncio.run`` stands in without one).
    wait: Callable[[Awaitable[Any]], object] | None = None

    def close(self) -> None:
        """Run the cleanups from a thread; async ones through :attr:`wait`."""
        for cleanup in self._take_cleanups():
            outcome = _call_logged(cleanup)
            if inspect.isawaitable(outcome):
                self._wait_logged(outcome, cleanup)
        self.finish()

    async def aclose(self, to_thread: Callable[..., Awaitable[Any]]) -> None:
        """Run the cleanups from an event loop, each in a thread through ``to_thread`` (closing a
        generator, deleting a file: blocking work), async ones waited for there too."""
        for cleanup in self._take_cleanups():
            outcome = await to_thread(_call_logged, cleanup)
            if inspect.isawaitable(outcome):
                await to_thread(self._wait_logged, outcome, cleanup)
        self.finish()

    def finish(self) -> None:
        """Run the :attr:`finished` callbacks, here and once."""
        finished, self.finished = self.finished, []
        for callback in finished:
            _call_logged(callback)

    def _wait_logged(self, awaitable: Awaitable[Any], cleanup: object) -> None:
        try:
            (self.wait or _run)(awaitable)
        except Exception:
            logger.exception("Cleanup %r failed after the response", cleanup)

    def _take_cleanups(self) -> list[Callable[[], object]]:
        cleanups, self.cleanups = self.cleanups, []
        return cleanups


def without_body(reply: Reply) -> Reply:
    """The reply with no body: its headers (Content-Length included) stay as they are. A stream
    is closed first thing among the cleanups (its generator's ``finally`` runs), a file is
    simply not read."""
    if isinstance(reply.body, StreamBody):
        close = closer(reply.body.chunks)
        if close is not None:
            reply.cleanups.insert(0, close)
    reply.body = b""
    return reply


#: Statuses that never carry a body (RFC 9110 6.4.1).
BODILESS = frozenset({204, 304})


def for_method(reply: Reply, method: str) -> Reply:
    """The reply as ``method`` gets it: the one rule for HEAD (the headers GET would get, no
    body) and for the statuses that have no body (1xx, 204, 304). Every answer passes here once."""
    if method == "HEAD" or reply.status_code in BODILESS or reply.status_code < 200:
        return without_body(reply)
    return reply


def discard(reply: Reply) -> None:
    """Throw away a reply nobody will send (a pipeline that answered too late), closing its body."""
    without_body(reply).close()


async def adiscard(reply: Reply, to_thread: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> None:
    """:func:`discard` from an event loop: blocking closes go to a thread through ``to_thread``."""
    await without_body(reply).aclose(to_thread)


def discard_late(future: asyncio.Future[Any], to_thread: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> None:
    """A done-callback for work whose requester stopped waiting (a timeout, a cancelled request):
    a Reply it made after all is thrown away properly, so its cleanups still run (a stream slot
    given back, a temp file deleted). Bind ``to_thread`` to the pool that should close it."""
    if future.cancelled() or future.exception() is not None:
        return
    late = future.result()
    if isinstance(late, Reply):
        task = asyncio.ensure_future(adiscard(late, to_thread))
        _DISCARDING.add(task)  # a reference, so the task is not collected before it runs
        task.add_done_callback(_DISCARDING.discard)


_DISCARDING: set[asyncio.Task[None]] = set()


#: A browser must never take a JSON answer for HTML, even one that echoes what a client sent.
JSON_HEADERS = (("content-type", "application/json"), ("x-content-type-options", "nosniff"))


def json_reply(
    status_code: int,
    content: Any,
    headers: list[tuple[str, str]] | None = None,
    cleanups: list[Callable[[], object]] | None = None,
) -> Reply:
    body = encode_json(content)
    return Reply(
        status_code,
        [*JSON_HEADERS, ("content-length", str(len(body))), *(headers or [])],
        body,
        cleanups=cleanups or [],
    )


def error_reply(
    status_code: int,
    detail: Any,
    headers: list[tuple[str, str]] | None = None,
    cleanups: list[Callable[[], object]] | None = None,
) -> Reply:
    """The contract's error shape: ``{"detail": ...}`` as JSON."""
    return json_reply(status_code, {"detail": detail}, headers, cleanups)


def method_not_allowed(allowed: tuple[str, ...]) -> Reply:
    """405 with ``Allow`` listing ``allowed`` in the order given."""
    return error_reply(405, "Method Not Allowed", [("allow", ", ".join(allowed))])


# Frameworks build Allow from a set, so its order changes from process to process; ours does not.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def framework_error(status_code: int, allow: str | None = None, method: str = "GET") -> Reply:
    """The contract's JSON for an error the framework raised itself (no route: 404; wrong method: 405)."""
    headers = []
    if allow:
        methods = {method.strip().upper() for method in allow.split(",") if method.strip()}
        ordered = sorted(methods, key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else 99, m))
        headers.append(("allow", ", ".join(ordered)))
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    return for_method(error_reply(status_code, phrase, headers), method)


def body_malformed(reason: str) -> Reply:
    """400: the server's parser refused the request body (a bad chunk size, a trailer too large)."""
    logger.warning("Refused a malformed request body: %s", reason)
    return error_reply(400, malformed_detail(reason))


def malformed_detail(reason: str) -> str:
    # A parser's message may quote the offending bytes, which the client chose: cut short.
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return f"The request body is malformed: {reason.rstrip('.')}."


def body_too_large(limit: int) -> Reply:
    """413: the body is over ``limit`` bytes (said by Content-Length or a chunk, or found reading)."""
    return error_reply(413, too_large_detail(limit))


def too_large_detail(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


def wire_error(status_code: int, detail: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer in the contract's JSON shape, closing the connection: for a server
    that refuses a request before any frontend has seen it (a head too large, a malformed body).
    ``detail`` defaults to the status's phrase."""
    phrase = HTTPStatus(status_code).phrase
    reply = error_reply(status_code, phrase if detail is None else detail)
    assert isinstance(reply.body, bytes)
    head = "".join(f"{name}: {value}\r\n" for name, value in [*reply.headers, ("connection", "close")])
    return f"HTTP/1.1 {status_code} {phrase}\r\n{head}\r\n".encode("latin-1") + reply.body


def _call_logged(cleanup: Callable[[], object]) -> object:
    try:
        return cleanup()
    except Exception:
        # A failed cleanup must not hide the response that was already sent; say so in the log.
        logger.exception("Cleanup %r failed after the response", cleanup)
        return None


def _run(awaitable: Awaitable[Any]) -> object:
    async def wait() -> object:
        return await awaitable

    return asyncio.run(wait())
