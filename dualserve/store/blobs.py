"""Content-addressed blobs on disk: a result's bytes, kept once, never changed. Standard library only.

A blob is named by the SHA-256 of its bytes and lives at ``ROOT/ab/abcdef...``. It is written to a
temp file in ``ROOT/tmp`` and renamed into place, so a reader never sees half a blob, two
processes writing the same bytes end with one file, and a blob that exists is complete. Nothing
rewrites a blob: its ETag (the digest) holds for its whole life, which is what makes a Range or a
resumed download of a stored result safe.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["Blob", "BlobWriter", "Blobs"]

_COPY_SIZE = 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


class Blobs:
    """The blobs under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp = root / "tmp"
        self.temp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where blob ``digest`` lives (it may have been deleted since)."""
        return self._file(digest)

    def _file(self, digest: str) -> Path:
        # The blob's place on this disk. The methods here use it, not path(), which a subclass may
        # make fetch the blob from elsewhere first (S3Blobs): writing or deleting must not.
        if _DIGEST.fullmatch(digest) is None:
            raise ValueError(f"Not a blob digest: {digest!r}")
        return self.root / digest[:2] / digest

    def _completed(self, blob: Blob) -> None:
        """Called once a blob written here is complete and in place (even if it was there already):
        a subclass copies it elsewhere. Nothing to do on disk alone."""

    def writer(self) -> BlobWriter:
        """A new blob, written piece by piece: ``with blobs.writer() as w: w.write(...)``, then
        ``w.blob`` (a failure inside the block leaves nothing behind)."""
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> Blob:
        with self.writer() as writer:
            writer.write(data)
        return writer.blob

    def put_file(self, file: IO[bytes], length: int | None = None) -> Blob:
        """Copy ``length`` bytes (all by default) from ``file``'s current position."""
        with self.writer() as writer:
            left = length
            while left is None or left > 0:
                chunk = file.read(_COPY_SIZE if left is None else min(_COPY_SIZE, left))
                if not chunk:
                    break
                writer.write(chunk)
                if left is not None:
                    left -= len(chunk)
        return writer.blob

    def delete(self, digest: str) -> None:
        self._file(digest).unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        return self._file(digest).is_file()

    def touch(self, digest: str) -> None:
        """Mark the blob used now, for :meth:`shrink`: its access time is set, its modification
        time (which its ETag is made of) left as it is."""
        path = self._file(digest)
        try:
            os.utime(path, (time.time(), path.stat().st_mtime))
        except OSError:
            pass  # gone meanwhile: nothing to mark

    def shrink(self, max_bytes: int, keep: set[str]) -> list[str]:
        """Delete the least recently used blobs until they take at most ``max_bytes``, never one in
        ``keep`` (a queued job's request). A blob being sent stays readable: on POSIX an open file
        outlives its name. The digests deleted."""
        found = []
        for path in self.root.glob("??/*"):
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((stat.st_atime, stat.st_size, path.name))
        total = sum(size for _, size, _ in found)
        deleted = []
        for _, size, digest in sorted(found):
            if total <= max_bytes:
                break
            if digest in keep:
                continue
            # Not delete(): a subclass's delete may reach beyond this disk, and this bound is the disk's.
            self._file(digest).unlink(missing_ok=True)
            total -= size
            deleted.append(digest)
        return deleted


class BlobWriter:
    """Writes one blob; see :meth:`Blobs.writer`."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs
        self._hash = hashlib.sha256()
        self._size = 0
        self._file: IO[bytes] | None = None
        self._blob: Blob | None = None

    @property
    def blob(self) -> Blob:
        """The blob written, once the ``with`` block has ended without an error."""
        assert self._blob is not None, "the blob is complete when its with block ends"
        return self._blob

    def __enter__(self) -> BlobWriter:
        self._file = tempfile.NamedTemporaryFile(dir=self.blobs.temp, prefix="blob-", delete=False)
        return self

    def write(self, data: bytes) -> None:
        assert self._file is not None, "BlobWriter is used as a context manager"
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._file is not None
        self._file.close()
        temp = Path(self._file.name)
        if kind is not None:
            temp.unlink(missing_ok=True)
            return
        digest = self._hash.hexdigest()
        target = self.blobs._file(digest)
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            temp.unlink()  # the same bytes are stored already: one copy is kept
        else:
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        blob = Blob(digest, self._size)
        self.blobs._completed(blob)
        self._blob = blob
