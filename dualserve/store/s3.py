"""Blobs kept in an S3 bucket, so API processes and workers on several machines share one store.

``--store s3://BUCKET/PREFIX`` on any S3-compatible store (``AWS_ENDPOINT_URL`` names a non-AWS
one; boto3 reads it, and the credentials, itself). The bucket is the truth: blob ``digest`` is the
object ``PREFIX/digest``. Each machine keeps a local cache of blobs in front of it, a plain
:class:`~dualserve.store.blobs.Blobs` directory, because a stored result is served as a file
(Range, If-Range, ETag): a blob written here is uploaded once complete, and one written elsewhere
is downloaded the first time :meth:`S3Blobs.path` is asked for it.

A file's ETag and Last-Modified are made of its size and mtime, and every API process must give
the same ones for a blob, so every local copy takes the object's ``LastModified`` as its mtime. The
upload is conditional (``If-None-Match: *``), so two machines writing the same bytes at once
cannot leave the object with a date one of them has not seen.

boto3 is imported here only: it is an optional dependency, needed by this mode alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as S3ConnectionError

from . import Unavailable
from .blobs import Blob, Blobs

__all__ = ["RECHECK_EVERY", "S3Blobs", "parse_store"]

#: Seconds a local copy is served before the bucket is asked again whether it still holds the blob
#: and since when: bytes once deleted everywhere may be stored again later (the same answer cached
#: anew), and every machine must then give the new date, so the same ETag.
RECHECK_EVERY = 60.0

_SCHEME = "s3://"
#: The largest object one PUT may carry; a larger blob goes up in parts.
_SINGLE_PUT = 5 * 1024**3
_COPY_SIZE = 1024 * 1024
# Failures to reach the store (refused, timed out, cut off), after botocore's retries. A connection
# error covers EndpointConnectionError and ConnectTimeoutError; an HTTP client error covers
# ConnectionClosedError, ReadTimeoutError and ResponseStreamingError.
_UNREACHABLE = (S3ConnectionError, HTTPClientError, IncompleteReadError)
# Few attempts with botocore's short backoff (50 ms base outside throttling), short connect timeout:
# a request waits on these, and a store that is down must fail it in seconds, not minutes.
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
    # botocore >= 1.36 adds CRC32 trailers in aws-chunked bodies, which several S3-compatible stores
    # reject. The digest is the blob's own checksum and a download is checked against it.
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


def parse_store(value: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` for ``s3://BUCKET/PREFIX`` (the prefix may be empty), None for anything
    else: a directory.

    :raises ValueError: for ``s3://`` without a bucket.
    """
    if not value.lower().startswith(_SCHEME):
        return None
    bucket, _, prefix = value[len(_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"No bucket in the store {value!r}: write s3://BUCKET or s3://BUCKET/PREFIX")
    # Empty parts dropped: "s3://b//p/" is "p", and keys never hold "//".
    return bucket, "/".join(part for part in prefix.split("/") if part)


class S3Blobs(Blobs):
    """The blobs in ``s3://bucket/prefix``, cached under ``root`` on this machine.

    :meth:`shrink` bounds the local cache only and never deletes from the bucket: the bucket is
    bounded by job and cache expiry, which :meth:`delete` their digests from both, and by the
    operator's lifecycle rules. The credentials need ``s3:ListBucket`` besides get, put and delete
    (without it S3 answers 403, not 404, for a missing object).

    :param root: the local cache directory.
    :param bucket: the bucket's name.
    :param prefix: the keys' prefix, without slashes at either end (``""``: the bucket's top).
    """

    def __init__(self, root: Path, bucket: str, prefix: str = "") -> None:
        super().__init__(root)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # One client for the object's life: clients are thread-safe, sessions are not, so a
        # session of its own rather than boto3's shared default one.
        self._client: Any = boto3.session.Session().client("s3", config=_CONFIG)
        # digest -> time.monotonic() its local copy was last found to match the bucket.
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Blobs({str(self.root)!r}, {self.bucket!r}, {self.prefix!r})"

    def key(self, digest: str) -> str:
        """The object key of blob ``digest``."""
        self._file(digest)  # checks the digest
        return f"{self.prefix}/{digest}" if self.prefix else digest

    def path(self, digest: str) -> Path:
        """The local copy of blob ``digest``, downloaded first if this machine has none. If the
        bucket has none either, the path of a missing file, as for a deleted blob. A local copy is
        checked against the bucket at most every :data:`RECHECK_EVERY` seconds.

        :raises Unavailable: the bucket could not be reached and this machine has no copy.
        """
        local = self._file(digest)
        if local.is_file():
            return self._recheck(digest, local)
        with self._reaching("download", digest):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self.key(digest))
            except ClientError as exc:
                if _missing(exc):
                    return local
                raise
            # Into a temp file, renamed into place once complete and checked, as BlobWriter does.
            body = response["Body"]
            hasher = hashlib.sha256()
            with tempfile.NamedTemporaryFile(dir=self.temp, prefix="download-", delete=False) as file:
                temp = Path(file.name)
                try:
                    for chunk in body.iter_chunks(_COPY_SIZE):
                        file.write(chunk)
                        hasher.update(chunk)
                except BaseException:
                    temp.unlink(missing_ok=True)
                    raise
                finally:
                    body.close()
        if hasher.hexdigest() != digest:
            temp.unlink(missing_ok=True)
            raise Unavailable(f"The object s3://{self.bucket}/{self.key(digest)} does not hold the blob its name says")
        _set_mtime(temp, response["LastModified"])
        os.chmod(temp, 0o644)
        local.parent.mkdir(exist_ok=True)
        os.replace(temp, local)
        self._checked_now(digest)
        return local

    def exists(self, digest: str) -> bool:
        """Whether blob ``digest`` is here or in the bucket.

        :raises Unavailable: the bucket could not be reached.
        """
        if super().exists(digest):
            return True
        with self._reaching("look up", digest):
            return self._last_modified(digest) is not None

    def delete(self, digest: str) -> None:
        """Delete blob ``digest`` here and from the bucket (for every machine).

        :raises Unavailable: the bucket could not be reached.
        """
        super().delete(digest)
        with self._reaching("delete", digest):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(digest))  # a missing key is no error

    def presigned_url(
        self, digest: str, media_type: str | None, disposition: str | None = None, expires: int = 3600
    ) -> str:
        """A URL that GETs blob ``digest`` straight from the bucket for ``expires`` seconds, answered
        with ``media_type`` and the ``Content-Disposition`` header value ``disposition`` (a stored
        answer's own). Made locally: the bucket is not asked, so the blob may be missing."""
        params = {"Bucket": self.bucket, "Key": self.key(digest)}
        if media_type is not None:
            params["ResponseContentType"] = media_type
        if disposition is not None:
            params["ResponseContentDisposition"] = disposition
        url: str = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    def _completed(self, blob: Blob) -> None:
        # Upload unless the bucket has it already, then take the object's date as the local mtime.
        # On failure the local copy goes too: a copy here must carry the bucket's date, and the
        # next write of these bytes tries the upload again.
        local = self._file(blob.digest)
        try:
            with self._reaching("upload", blob.digest):
                last_modified = self._last_modified(blob.digest)
                if last_modified is None:
                    self._upload(local, blob)
                    last_modified = self._last_modified(blob.digest)
            if last_modified is None:
                raise Unavailable(f"s3://{self.bucket}/{self.key(blob.digest)} was gone right after its upload")
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        with suppress(FileNotFoundError):  # evicted meanwhile: path() brings it back with this date
            _set_mtime(local, last_modified)
        self._checked_now(blob.digest)

    def _upload(self, local: Path, blob: Blob) -> None:
        key = self.key(blob.digest)
        if blob.size > _SINGLE_PUT:
            # In parts; s3transfer has no conditional upload, so two machines writing these same
            # bytes at this same moment could see different dates (and give different ETags).
            self._client.upload_file(str(local), self.bucket, key)
            return
        try:
            with local.open("rb") as body:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentLength=blob.size, IfNoneMatch="*"
                )
        except ClientError as exc:
            # 412: written by another meanwhile; 409: another's conditional write is under way (AWS).
            if _status(exc) not in (409, 412):
                raise

    def _recheck(self, digest: str, local: Path) -> Path:
        checked = self._checked.get(digest)
        if checked is not None and time.monotonic() - checked < RECHECK_EVERY:
            return local
        try:
            with self._reaching("look up", digest):
                last_modified = self._last_modified(digest)
        except Unavailable:
            return local  # the bytes are right whatever the bucket says: serve them while it is away
        if last_modified is None:
            # Deleted by another machine (nothing refers to it any more), or being uploaded from
            # this one right now (BlobWriter renamed it into place): the copy here stays either way.
            return local
        with suppress(FileNotFoundError):
            if local.stat().st_mtime_ns != _seconds_ns(last_modified):
                _set_mtime(local, last_modified)  # deleted and stored again since it came here
        self._checked_now(digest)
        return local

    def _checked_now(self, digest: str) -> None:
        now = time.monotonic()
        with self._lock:  # no thread adds an entry while the stale ones are dropped
            if len(self._checked) > 10_000:  # drop the stale entries rather than grow for ever
                self._checked = {key: at for key, at in self._checked.items() if now - at < RECHECK_EVERY}
            self._checked[digest] = now

    def _last_modified(self, digest: str) -> datetime | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        last_modified: datetime = response["LastModified"]
        return last_modified

    @contextmanager
    def _reaching(self, action: str, digest: str) -> Iterator[None]:
        """Failures to reach the store, and its 5xx once botocore's retries are spent, as Unavailable."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise Unavailable(f"Could not {action} blob {digest} at s3://{self.bucket}: {exc}") from exc
        except ClientError as exc:
            if _status(exc) >= 500:
                raise Unavailable(f"Could not {action} blob {digest} at s3://{self.bucket}: {exc}") from exc
            raise


def _status(exc: ClientError) -> int:
    status: int = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status


def _missing(exc: ClientError) -> bool:
    return _status(exc) == 404 or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NotFound", "404")


def _seconds_ns(last_modified: datetime) -> int:
    # Whole seconds (S3's dates have no more), in nanoseconds: the float a stat gives back is then
    # exact, and the same on every machine.
    return int(last_modified.timestamp()) * 1_000_000_000


def _set_mtime(path: Path, last_modified: datetime) -> None:
    """The object's date as the file's mtime; its atime (for :meth:`Blobs.shrink`) kept."""
    os.utime(path, ns=(path.stat().st_atime_ns, _seconds_ns(last_modified)))
