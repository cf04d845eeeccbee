"""S3Blobs against moto's S3 server over real HTTP: two machines are two S3Blobs with their own
local cache directories and one bucket, and they must agree on every blob's bytes and date (its
ETag and Last-Modified)."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx2
import pytest
from moto.server import ThreadedMotoServer

from dualserve.core.http import content_disposition
from dualserve.serving.stored import StoredAnswer, stored_result
from dualserve.store import Unavailable
from dualserve.store import s3 as s3_module
from dualserve.store.s3 import S3Blobs, parse_store
from tests.servers import free_port

DATA = b"0123456789" * 1000
DIGEST = hashlib.sha256(DATA).hexdigest()
PREFIX = "results/v1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Fake credentials, and no profile or config file of the machine's."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


@pytest.fixture
def bucket(aws: pytest.MonkeyPatch, endpoint: str) -> str:
    """A new bucket on moto, which AWS_ENDPOINT_URL names, as a user sets it."""
    aws.setenv("AWS_ENDPOINT_URL", endpoint)
    name = f"dualserve-{uuid.uuid4().hex[:12]}"
    client().create_bucket(Bucket=name)
    return name


def client() -> Any:
    return boto3.client("s3")


def machine(tmp_path: Path, name: str, bucket: str) -> S3Blobs:
    """One machine's store: its own local cache, the shared bucket."""
    return S3Blobs(tmp_path / name, bucket, PREFIX)


def keys(bucket: str) -> list[str]:
    return [item["Key"] for item in client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def last_modified(bucket: str, digest: str) -> float:
    stamp: float = client().head_object(Bucket=bucket, Key=f"{PREFIX}/{digest}")["LastModified"].timestamp()
    return stamp


def test_a_blob_put_on_one_machine_is_read_on_another(tmp_path: Path, bucket: str) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    blob = a.put_bytes(DATA)
    assert blob.digest == DIGEST
    assert keys(bucket) == [f"{PREFIX}/{DIGEST}"]
    assert not b._file(DIGEST).exists()
    path = b.path(DIGEST)
    assert path == b._file(DIGEST)
    assert path.read_bytes() == DATA
    # The same date everywhere, the object's: the same ETag and Last-Modified from every machine.
    assert a.path(DIGEST).stat().st_mtime == path.stat().st_mtime == last_modified(bucket, DIGEST)
    assert list(b.temp.iterdir()) == []


@pytest.mark.parametrize("how", ["writer", "put_file"])
def test_every_way_of_writing_uploads(tmp_path: Path, bucket: str, how: str) -> None:
    a = machine(tmp_path, "a", bucket)
    if how == "writer":
        with a.writer() as writer:
            writer.write(DATA[:10])
            writer.write(DATA[10:])
        blob = writer.blob
    else:
        blob = a.put_file(io.BytesIO(DATA))
    assert blob.digest == DIGEST
    assert keys(bucket) == [f"{PREFIX}/{DIGEST}"]
    assert a.path(DIGEST).stat().st_mtime == last_modified(bucket, DIGEST)


def test_bytes_in_the_bucket_already_are_not_uploaded_again(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    a.put_bytes(DATA)
    puts: list[object] = []
    monkeypatch.setattr(b._client, "put_object", lambda **kwargs: puts.append(kwargs))
    b.put_bytes(DATA)
    assert puts == []
    assert b.path(DIGEST).stat().st_mtime == a.path(DIGEST).stat().st_mtime


def test_two_machines_uploading_the_same_bytes_at_once_keep_one_date(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    a.put_bytes(DATA)
    time.sleep(1.1)  # S3's dates are whole seconds: a second PUT would show
    # b looked before a's upload ended: it uploads too, and the conditional PUT is refused (412).
    looked = b._last_modified
    looks: list[str] = []

    def late(digest: str) -> datetime | None:
        looks.append(digest)
        return None if len(looks) == 1 else looked(digest)

    monkeypatch.setattr(b, "_last_modified", late)
    b.put_bytes(DATA)
    assert b.path(DIGEST).stat().st_mtime == a.path(DIGEST).stat().st_mtime == last_modified(bucket, DIGEST)


def test_a_blob_larger_than_one_put_goes_up_in_parts(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "_SINGLE_PUT", 100)
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    a.put_bytes(DATA)
    assert b.path(DIGEST).read_bytes() == DATA
    assert b.path(DIGEST).stat().st_mtime == a.path(DIGEST).stat().st_mtime == last_modified(bucket, DIGEST)


def test_exists_and_delete_reach_the_bucket(tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    a.put_bytes(DATA)
    assert b.exists(DIGEST)  # in the bucket only
    assert not b._file(DIGEST).exists()
    b.path(DIGEST)
    a.delete(DIGEST)
    assert not a._file(DIGEST).exists()
    assert keys(bucket) == []
    assert not a.exists(DIGEST)
    # b's copy stays (nothing refers to the blob any more) until b's own shrink or delete.
    monkeypatch.setattr(s3_module, "RECHECK_EVERY", 0.0)
    assert b.path(DIGEST).read_bytes() == DATA
    b.delete(DIGEST)
    assert not b.path(DIGEST).exists()
    assert not b.exists(DIGEST)
    b.delete(DIGEST)  # deleting what is gone is no error


def test_bytes_stored_again_after_a_delete_take_the_new_date_everywhere(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    a.put_bytes(DATA)
    first = b.path(DIGEST).stat().st_mtime
    a.delete(DIGEST)
    time.sleep(1.1)  # S3's dates are whole seconds
    a.put_bytes(DATA)
    again = a.path(DIGEST).stat().st_mtime
    assert again > first
    assert b.path(DIGEST).stat().st_mtime == first  # checked with the bucket a moment ago
    monkeypatch.setattr(s3_module, "RECHECK_EVERY", 0.0)
    assert b.path(DIGEST).stat().st_mtime == again == last_modified(bucket, DIGEST)


def test_shrink_bounds_the_local_cache_only(tmp_path: Path, bucket: str) -> None:
    a = machine(tmp_path, "a", bucket)
    digests = [a.put_bytes(bytes([n]) * 1000).digest for n in range(3)]
    assert sorted(a.shrink(0, keep=set())) == sorted(digests)
    assert not any(a._file(digest).exists() for digest in digests)
    assert sorted(keys(bucket)) == sorted(f"{PREFIX}/{digest}" for digest in digests)
    assert all(a.exists(digest) for digest in digests)
    assert a.path(digests[0]).read_bytes() == bytes([0]) * 1000


def test_a_missing_blob_is_a_missing_path(tmp_path: Path, bucket: str) -> None:
    a = machine(tmp_path, "a", bucket)
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not a.path(missing).exists()
    assert a.path(missing) == a._file(missing)
    assert not a.exists(missing)
    assert list(a.temp.iterdir()) == []


@pytest.mark.parametrize(
    "disposition",
    [
        pytest.param(None, id="no-filename"),
        pytest.param('attachment; filename="out.txt"', id="ascii"),
        pytest.param(content_disposition("inline", "Vögel.txt"), id="non-ascii"),
    ],
)
def test_a_presigned_url_serves_the_blob(tmp_path: Path, bucket: str, disposition: str | None) -> None:
    a = machine(tmp_path, "a", bucket)
    a.put_bytes(DATA)
    url = a.presigned_url(DIGEST, "text/plain; charset=utf-8", disposition, expires=60)
    response = httpx2.get(url)
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers.get("content-disposition") == disposition
    partial = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206
    assert partial.content == DATA[10:20]
    assert partial.headers["content-range"] == f"bytes 10-19/{len(DATA)}"


def test_stored_result_is_the_same_from_every_machine(tmp_path: Path, bucket: str) -> None:
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    answer = StoredAnswer(a.put_bytes(DATA).digest, 200, "text/plain", [["x-kept", "1"]])
    here, there = stored_result(a, answer), stored_result(b, answer)
    assert here is not None and there is not None
    assert there.path == b._file(DIGEST)
    assert (there.size, there.mtime) == (here.size, here.mtime) == (len(DATA), last_modified(bucket, DIGEST))
    assert there.stored and there.media_type == "text/plain" and ("x-kept", "1") in there.headers
    b.delete(DIGEST)
    assert stored_result(a, answer) is not None  # a has not checked with the bucket since
    assert stored_result(b, answer) is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param("s3://bucket", ("bucket", ""), id="bucket"),
        pytest.param("s3://bucket/", ("bucket", ""), id="bucket-slash"),
        pytest.param("s3://bucket/a/b", ("bucket", "a/b"), id="prefix"),
        pytest.param("s3://bucket//a//b/", ("bucket", "a/b"), id="slashes"),
        pytest.param("S3://bucket/a", ("bucket", "a"), id="upper-case-scheme"),
        pytest.param("/var/lib/dualserve", None, id="directory"),
        pytest.param("s3-results", None, id="relative-directory"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_store(value: str, parsed: tuple[str, str] | None) -> None:
    assert parse_store(value) == parsed


@pytest.mark.parametrize("value", ["s3://", "s3:///prefix"])
def test_parse_store_needs_a_bucket(value: str) -> None:
    with pytest.raises(ValueError, match="No bucket"):
        parse_store(value)


def test_an_unreachable_store_is_unavailable_quickly(tmp_path: Path, aws: pytest.MonkeyPatch) -> None:
    aws.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    a = S3Blobs(tmp_path / "a", "bucket", PREFIX)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        a.put_bytes(DATA)
    assert not a._file(DIGEST).exists()  # a local copy must carry the bucket's date: none
    with pytest.raises(Unavailable):
        a.path(DIGEST)
    with pytest.raises(Unavailable):
        a.exists(DIGEST)
    with pytest.raises(Unavailable):
        a.delete(DIGEST)
    assert list(a.temp.iterdir()) == []
    assert time.monotonic() - started < 5


def test_a_local_copy_is_served_while_the_store_is_unreachable(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(tmp_path, "a", bucket).put_bytes(DATA)
    monkeypatch.setattr(s3_module, "RECHECK_EVERY", 0.0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    cut_off = machine(tmp_path, "a", bucket)  # the same local cache, the store out of reach
    assert cut_off.path(DIGEST).read_bytes() == DATA
