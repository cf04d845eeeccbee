"""Answers kept in the result store: a reply's body as a blob, its status and headers as a record.

A job's result and a cached answer are both kept this way and served back with
:func:`stored_result`, as a file that is there for the answer's life: the core then gives it an
ETag that holds, Range, If-Range, 304 and HEAD, and never runs the pipeline for any of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ..core.reply import FileBody, Reply, StreamBody
from ..core.returns import PathResult
from ..core.streams import close_iterator
from ..store.blobs import Blobs

__all__ = ["StoredAnswer", "store_reply", "stored_result"]

#: Seconds within which a blob served again is not marked used again (one syscall less per hit;
#: the store's bound goes by minutes, not seconds).
TOUCH_EVERY = 60.0

#: The reply headers a stored answer keeps; its validators, length and ranges are the store's own.
_DROPPED = frozenset(
    {
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "accept-ranges",
        "content-range",
        "cache-control",
        "x-content-type-options",
        "age",
    }
)


@dataclass(frozen=True)
class StoredAnswer:
    digest: str
    status_code: int
    media_type: str | None
    headers: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredAnswer:
        return cls(data["digest"], data["status_code"], data["media_type"], data["headers"])


def store_reply(blobs: Blobs, reply: Reply) -> StoredAnswer:
    """Keep ``reply``'s body (bytes, a file's range, or a stream read to its end) and what describes
    it. The reply is not closed here."""
    body = reply.body
    if isinstance(body, bytes):
        digest = blobs.put_bytes(body).digest
    elif isinstance(body, FileBody):
        with body.path.open("rb") as file:
            file.seek(body.start)
            digest = blobs.put_file(file, body.length).digest
    else:
        assert isinstance(body, StreamBody)
        chunks = body.chunks
        assert isinstance(chunks, Iterator), "an answer is stored from a thread"
        try:
            with blobs.writer() as writer:
                for chunk in chunks:
                    writer.write(chunk)
        finally:
            close_iterator(chunks)  # a stream that failed midway: its generator's finally runs now
        digest = writer.blob.digest
    headers = [[name, value] for name, value in reply.headers if name not in _DROPPED]
    media_type = next((value for name, value in reply.headers if name == "content-type"), None)
    return StoredAnswer(digest, reply.status_code, media_type, headers)


def stored_result(blobs: Blobs, answer: StoredAnswer, extra: tuple[tuple[str, str], ...] = ()) -> PathResult | None:
    """The stored answer as a result to render, with ``extra`` headers (``Age``); None if its blob
    is gone (evicted, expired)."""
    path = blobs.path(answer.digest)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    if time.time() - stat.st_atime > TOUCH_EVERY:
        blobs.touch(answer.digest)  # used now: the last to go when the store is over its bound
    return PathResult(
        path=path,
        size=stat.st_size,
        mtime=stat.st_mtime,
        media_type=answer.media_type,
        status_code=answer.status_code,
        headers=(*((name, value) for name, value in answer.headers), *extra),
        stored=True,
    )
