"""A byte range of a file, read by every frontend the same way: one reader for a FileBody."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

from ..core.reply import FileBody
from ..core.returns import FILE_CHUNK_SIZE

__all__ = ["FILE_CHUNK_SIZE", "RangeFile", "read_range"]


class RangeFile:
    """The bytes of a :class:`FileBody` as a binary file: reads stop at the range's end, and
    :meth:`close` also runs ``on_close`` (the reply's cleanups: deleting a temp file, say).

    It is opened when made, so a file that cannot be read (permissions, an I/O error) fails
    before any header goes out, and ``on_close`` still runs then. A WSGI server's
    ``wsgi.file_wrapper`` may send it with sendfile from its current offset, for Content-Length
    bytes (``fileno``, ``seek``, ``tell``).
    """

    def __init__(self, body: FileBody, on_close: Callable[[], None]) -> None:
        try:
            self._file: IO[bytes] = open(body.path, "rb")
        except OSError:
            on_close()
            raise
        self._file.seek(body.start)
        self._remaining = body.length
        self._on_close = on_close

    def read(self, size: int = -1) -> bytes:
        size = self._remaining if size < 0 else min(size, self._remaining)
        chunk = self._file.read(size)
        self._remaining -= len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        with self:
            while chunk := self.read(FILE_CHUNK_SIZE):
                yield chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._on_close()

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_range(body: FileBody) -> bytes:
    """The bytes of a small :class:`FileBody`, read whole: one trip to a thread on an event loop
    (open, read, close) instead of one per step."""
    with open(body.path, "rb") as file:
        file.seek(body.start)
        return file.read(body.length)
