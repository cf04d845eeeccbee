"""Request bodies read ahead of the app: in memory, then in a temp file; and a client that left."""

from __future__ import annotations

import io
import logging
import tempfile
from typing import IO

__all__ = ["SPOOL_SIZE", "ClientDisconnected", "Spool"]

#: Request body bytes kept in memory; past them a body read ahead goes to a temp file.
SPOOL_SIZE = 1024 * 1024
logger = logging.getLogger("dualserve")


class Spool:
    """Bytes kept in memory up to ``size``, then in a temp file: a request body read ahead of
    the app. If the disk refuses them (full, a file size limit), they come back to memory: the
    body is capped by ``max_body_size`` anyway, and an upload the app spools itself then gets
    its ``507``, as it did before bodies were read ahead."""

    def __init__(self, size: int = SPOOL_SIZE) -> None:
        self.size = size
        self._memory = io.BytesIO()  # the bytes while there is no disk file
        self._disk: io.FileIO | None = None
        self._disk_refused = False

    def write(self, data: bytes | bytearray) -> None:
        if self._disk is None and not self._disk_refused and self._memory.tell() + len(data) > self.size:
            self._to_disk()
        if self._disk is None:
            self._memory.write(data)
        else:
            self._write_disk(data)

    def take(self) -> IO[bytes]:
        """The bytes written, from the first; the caller closes the file."""
        if self._disk is not None:
            self._disk.seek(0)
            return io.BufferedReader(self._disk)
        self._memory.seek(0)
        return self._memory

    def close(self) -> None:
        self._memory.close()
        if self._disk is not None:
            self._disk.close()

    def _to_disk(self) -> None:
        try:
            self._disk = tempfile.TemporaryFile(buffering=0)
        except OSError as exc:
            self._refused(exc)
            return
        memory, self._memory = self._memory, io.BytesIO()
        self._write_disk(memory.getvalue())
        memory.close()

    def _write_disk(self, data: bytes | bytearray) -> None:
        assert self._disk is not None
        view = memoryview(data)
        try:
            while view:
                # Unbuffered: when a write fails, the bytes it returned are all that were written.
                view = view[self._disk.write(view) or 0 :]
        except OSError as exc:
            self._disk.seek(0)
            self._memory = io.BytesIO(self._disk.readall())
            self._memory.seek(0, io.SEEK_END)
            self._memory.write(view)
            self._disk.close()
            self._disk = None
            self._refused(exc)

    def _refused(self, exc: OSError) -> None:
        self._disk_refused = True
        logger.warning("A request body is kept in memory: the disk refused it (%s)", exc)


class ClientDisconnected(ConnectionError):
    """The client went away; raised into the app that was still sending to it."""
