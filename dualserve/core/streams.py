"""Streams: the first chunk pulled before the headers, chunks checked and encoded. Standard library only.

A stream's first chunk is pulled before any header is sent: a generator that fails at once
becomes a real 500 JSON answer, and the first chunk tells bytes (octet-stream) from text.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

from ..exceptions import ResolveError
from .returns import TEXT_PLAIN, StreamResult
from .sniff import OCTET_STREAM

__all__ = ["aclose_iterator", "close_iterator", "closer", "prime_async", "prime_sync"]


def prime_sync(result: StreamResult, label: str = "a stream") -> StreamResult:
    """Pull the first chunk of a sync stream; the result's chunks are then checked ``bytes``."""
    chunks = result.chunks
    assert isinstance(chunks, Iterator)
    try:
        first = next(chunks, _END)
        head = b"" if first is _END else _chunk(first)  # a bad first chunk is still a JSON 500
    except BaseException:
        _close(chunks)
        raise
    return dataclasses.replace(result, chunks=_Primed(head, chunks, label), media_type=_stream_type(result, first))


async def prime_async(result: StreamResult, label: str = "a stream") -> StreamResult:
    """Pull the first chunk of an async stream; the result's chunks are then checked ``bytes``."""
    chunks = result.chunks
    assert isinstance(chunks, AsyncIterator)
    try:
        first = await anext(chunks, _END)
        head = b"" if first is _END else _chunk(first)
    except BaseException:
        await aclose_iterator(chunks)
        raise
    return dataclasses.replace(result, chunks=_APrimed(head, chunks, label), media_type=_stream_type(result, first))


class _Primed(Iterator[bytes]):
    """A primed stream's checked chunks. Closing it closes the wrapper's iterator even when no
    chunk was taken (a HEAD, a late reply thrown away): the wrapper's generator is then suspended
    after its first chunk, and its ``finally`` must not wait for the garbage collector."""

    def __init__(self, head: bytes, rest: Iterator[Any], label: str) -> None:
        self._chunks = _encoded(head, rest, label)
        self._rest = rest

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            _close(self._rest)


class _APrimed(AsyncIterator[bytes]):
    """:class:`_Primed` for an async stream."""

    def __init__(self, head: bytes, rest: AsyncIterator[Any], label: str) -> None:
        self._chunks = _aencoded(head, rest, label)
        self._rest = rest

    async def __anext__(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()
        finally:
            await aclose_iterator(self._rest)


_END = object()
logger = logging.getLogger("dualserve")


def _log_cut(label: str, sent: int) -> None:
    # The headers are out: the client can only see a cut-off body, so the log must say why.
    logger.error("%s failed after %d bytes; the client gets a cut-off body", label, sent, exc_info=True)


def _stream_type(result: StreamResult, first: Any) -> str:
    if result.media_type is not None:
        return result.media_type
    return TEXT_PLAIN if isinstance(first, str) else OCTET_STREAM


def _encoded(head: bytes, rest: Iterator[Any], label: str) -> Generator[bytes, None, None]:
    sent = len(head)
    try:
        yield from _nonempty(head)
        for chunk in rest:
            data = _chunk(chunk)
            sent += len(data)
            yield from _nonempty(data)
    except Exception:
        _log_cut(label, sent)
        raise
    finally:
        _close(rest)


async def _aencoded(head: bytes, rest: AsyncIterator[Any], label: str) -> AsyncGenerator[bytes, None]:
    sent = len(head)
    try:
        for encoded in _nonempty(head):
            yield encoded
        async for chunk in rest:
            data = _chunk(chunk)
            sent += len(data)
            for encoded in _nonempty(data):
                yield encoded
    except Exception:
        _log_cut(label, sent)
        raise
    finally:
        await aclose_iterator(rest)


def _chunk(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    # Headers are already sent: the body is cut off here, and the log says why.
    raise ResolveError(f"A stream yielded a {type(chunk).__name__}; streams must yield bytes or str.")


def _nonempty(chunk: bytes) -> tuple[bytes, ...]:
    # An empty chunk would end a chunked body early on some servers.
    return (chunk,) if chunk else ()


def close_iterator(iterator: object) -> None:
    """Close a sync iterator if it can be closed (a generator's ``finally`` runs now, not at GC)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


async def aclose_iterator(iterator: object) -> None:
    """Close an async iterator if it can be closed."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def closer(iterator: object) -> Callable[[], object] | None:
    """What closes ``iterator``, sync or async (a coroutine function then), or ``None``."""
    close: Callable[[], object] | None = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
    return close


_close = close_iterator
