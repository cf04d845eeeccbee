"""DESIGN.md section 4, row by row, for bytes, file and image results, on every frontend.

Range rows hold as written for a stored result (a file the wrapper keeps on disk); the bytes and
the image a run makes are not stored (contract section 6, "never spliced"): ``Accept-Ranges:
none``, a Range ignored (200 with the whole body), and a continuation (one range from past the
first byte, no If-Range) refused with 409.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx2
import pytest

from dualserve import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, assert_alike, frontend_client
from tests.wrappers import make_wrappers

KINDS = ["range_bytes", "range_path", "range_image"]
#: Kept by the server for the representation's life, so a Range continues the same bytes.
STORED = {"range_path"}


@dataclass(frozen=True)
class Full:
    """The 200 answer to a plain GET, the reference for every row."""

    body: bytes
    etag: str
    last_modified: str | None

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class Row:
    method: str
    headers: Callable[[Full], dict[str, str]]
    status: int
    body: Callable[[Full], bytes]
    content_range: Callable[[Full], str | None] = lambda full: None
    #: Needs a Last-Modified, which only file results have.
    files_only: bool = False
    #: The status of a result that is not stored, where it differs: a 206 or 416 only a stored
    #: result gives becomes 200 with the whole body, or 409 for a continuation.
    unstored: int | None = None

    def expected(self, kind: str, full: Full) -> tuple[int, bytes, str | None]:
        """The status, body and Content-Range for ``kind``."""
        if self.unstored is None or kind in STORED:
            return self.status, self.body(full), self.content_range(full)
        if self.unstored == 409:
            return 409, NOT_RESUMABLE, None
        return 200, (full.body if self.method != "HEAD" else b""), None


NOT_RESUMABLE = (
    b'{"detail":"This answer is made anew by every run and is not stored, so a download of it cannot be resumed: '
    b'request it again without Range."}'
)


STALE_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"
FUTURE_DATE = "Fri, 01 Jan 2100 00:00:00 GMT"

ROWS = [
    pytest.param(Row("GET", lambda f: {}, 200, lambda f: f.body), id="1-get"),
    pytest.param(Row("HEAD", lambda f: {}, 200, lambda f: b""), id="2-head"),
    pytest.param(
        Row(
            "GET",
            lambda f: {"range": "bytes=0-99"},
            206,
            lambda f: f.body[:100],
            lambda f: f"bytes 0-99/{f.size}",
            unstored=200,
        ),
        id="3-range-first-100",
    ),
    pytest.param(
        Row(
            "GET",
            lambda f: {"range": "bytes=-100"},
            206,
            lambda f: f.body[-100:],
            lambda f: f"bytes {f.size - 100}-{f.size - 1}/{f.size}",
            unstored=200,
        ),
        id="4-range-suffix",
    ),
    pytest.param(
        Row(
            "GET",
            lambda f: {"range": "bytes=10-99999999"},
            206,
            lambda f: f.body[10:],
            lambda f: f"bytes 10-{f.size - 1}/{f.size}",
            unstored=409,
        ),
        id="4-range-end-clamped",
    ),
    pytest.param(
        Row(
            "GET",
            lambda f: {"range": f"bytes={f.size}-"},
            416,
            lambda f: b'{"detail":"Range Not Satisfiable"}',
            unstored=409,
        ),
        id="5-range-past-end",
    ),
    pytest.param(Row("GET", lambda f: {"range": "bytes=abc"}, 200, lambda f: f.body), id="6-malformed-range"),
    pytest.param(Row("GET", lambda f: {"range": "bytes=0-1,5-6"}, 200, lambda f: f.body), id="6-multi-range"),
    pytest.param(Row("GET", lambda f: {"range": "items=0-1"}, 200, lambda f: f.body), id="6-other-unit"),
    pytest.param(Row("GET", lambda f: {"if-none-match": f.etag}, 304, lambda f: b""), id="7-if-none-match"),
    pytest.param(Row("GET", lambda f: {"if-none-match": "*"}, 304, lambda f: b""), id="7-if-none-match-star"),
    pytest.param(
        Row("GET", lambda f: {"if-none-match": f'"other", W/{f.etag}'}, 304, lambda f: b""),
        id="7-if-none-match-weak-list",
    ),
    pytest.param(Row("HEAD", lambda f: {"if-none-match": f.etag}, 304, lambda f: b""), id="7-head-304"),
    pytest.param(Row("GET", lambda f: {"if-none-match": '"other"'}, 200, lambda f: f.body), id="7-if-none-match-miss"),
    pytest.param(
        Row("GET", lambda f: {"if-modified-since": FUTURE_DATE}, 304, lambda f: b"", files_only=True),
        id="7-if-modified-since",
    ),
    pytest.param(
        Row("GET", lambda f: {"if-modified-since": STALE_DATE}, 200, lambda f: f.body), id="7-if-modified-since-stale"
    ),
    pytest.param(
        Row(
            "GET",
            lambda f: {"range": "bytes=0-9", "if-range": f.etag},
            206,
            lambda f: f.body[:10],
            lambda f: f"bytes 0-9/{f.size}",
            unstored=200,
        ),
        id="8-if-range-match",
    ),
    pytest.param(
        Row("GET", lambda f: {"range": "bytes=0-9", "if-range": '"stale"'}, 200, lambda f: f.body),
        id="8-if-range-stale",
    ),
    pytest.param(
        Row("GET", lambda f: {"range": "bytes=0-9", "if-range": f"W/{f.etag}"}, 200, lambda f: f.body),
        id="8-if-range-weak-never-matches",
    ),
    pytest.param(
        Row("GET", lambda f: {"if-match": '"other"'}, 412, lambda f: b'{"detail":"Precondition Failed"}'),
        id="8-if-match-miss",
    ),
    pytest.param(Row("GET", lambda f: {"if-match": f.etag}, 200, lambda f: f.body), id="8-if-match-hit"),
    pytest.param(
        Row(
            "GET",
            lambda f: {"if-unmodified-since": STALE_DATE},
            412,
            lambda f: b'{"detail":"Precondition Failed"}',
            files_only=True,
        ),
        id="8-if-unmodified-since",
    ),
    pytest.param(
        Row("POST", lambda f: {"range": "bytes=0-9", "if-none-match": f.etag}, 200, lambda f: f.body),
        id="post-is-never-ranged-or-conditional",
    ),
]


def full_answer(client: httpx2.Client, kind: str) -> Full:
    response = client.get(f"{kind}/run")
    assert response.status_code == 200
    return Full(response.content, response.headers["etag"], response.headers.get("last-modified"))


def send(client: httpx2.Client, kind: str, row: Row, full: Full) -> httpx2.Response:
    return client.request(row.method, f"{kind}/run", headers=row.headers(full))


# Each row for each kind of result, but date rows for files only: the others have no
# Last-Modified, and test_date_preconditions_are_ignored_without_last_modified covers them.
CASES = [
    pytest.param(kind, row.values[0], id=f"{row.id}-{kind}")
    for row in ROWS
    for kind in KINDS
    if kind == "range_path" or not cast(Row, row.values[0]).files_only
]


@pytest.mark.parametrize(("kind", "row"), CASES)
def test_row(client: httpx2.Client, kind: str, row: Row) -> None:
    full = full_answer(client, kind)
    response = send(client, kind, row, full)
    status, body, content_range = row.expected(kind, full)
    assert response.status_code == status, response.content
    assert response.content == body
    headers = response.headers
    assert headers.get("content-range") == (content_range if status != 416 else f"bytes */{full.size}")
    if status in (200, 206):
        assert headers["etag"] == full.etag
        assert headers["accept-ranges"] == ("bytes" if kind in STORED else "none")
        assert headers.get("last-modified") == full.last_modified
        expected_length = len(body) if row.method != "HEAD" else full.size
        assert headers["content-length"] == str(expected_length)
        assert headers["content-type"] == client.get(f"{kind}/run").headers["content-type"]
    if status == 304:
        assert headers["etag"] == full.etag
        assert headers["cache-control"] == "no-cache"
        assert "content-type" not in headers and "content-length" not in headers
    if status in (409, 412, 416):
        assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(("kind", "row"), CASES)
def test_row_identical_everywhere(clients: dict[str, httpx2.Client], kind: str, row: Row) -> None:
    assert_alike(clients, lambda c: send(c, kind, row, full_answer(c, kind)))


@pytest.mark.parametrize("kind", ["range_bytes", "range_image"])
def test_date_preconditions_are_ignored_without_last_modified(client: httpx2.Client, kind: str) -> None:
    full = full_answer(client, kind)
    assert full.last_modified is None
    response = client.get(f"{kind}/run", headers={"if-modified-since": FUTURE_DATE, "if-unmodified-since": STALE_DATE})
    assert (response.status_code, response.content) == (200, full.body)


def test_last_modified_is_the_files_mtime(client: httpx2.Client) -> None:
    full = full_answer(client, "range_path")
    assert full.last_modified is not None
    response = client.get("range_path/run", headers={"if-modified-since": full.last_modified})
    assert response.status_code == 304
    response = client.get("range_path/run", headers={"range": "bytes=0-0", "if-range": full.last_modified})
    assert (response.status_code, response.content) == (206, full.body[:1])


TEMP_CASES = [
    pytest.param("GET", {}, 200, id="full-download"),
    pytest.param("HEAD", {}, 200, id="head"),
    pytest.param("GET", {"if-none-match": "*"}, 304, id="not-modified"),
    pytest.param("GET", {"if-match": '"nope"'}, 412, id="precondition-failed"),
    # A file deleted after the answer is the run's own, never stored: its Range is ignored, and a
    # continuation of it refused.
    pytest.param("GET", {"range": "bytes=0-9"}, 200, id="range-ignored"),
    pytest.param("GET", {"range": "bytes=5000-"}, 409, id="continuation"),
]


@pytest.mark.parametrize(("method", "headers", "status"), TEMP_CASES)
def test_delete_after_removes_the_file(
    client: httpx2.Client, tmp_path: Path, method: str, headers: dict[str, str], status: int
) -> None:
    response = client.request(method, "temp_file/run", params={"directory": str(tmp_path)}, headers=headers)
    assert response.status_code == status
    assert list(tmp_path.iterdir()) == []


LIMITED = 1000


@pytest.fixture(scope="module")
def limited_service() -> Service:
    return Service(Registry.from_wrappers(make_wrappers()), max_body_size=LIMITED)


@pytest.fixture(params=FRONTENDS)
def limited(request: pytest.FixtureRequest, limited_service: Service) -> Iterator[httpx2.Client]:
    with frontend_client(request.param, limited_service) as client:
        yield client


TOO_LARGE = b'{"detail":"The request body is larger than the limit of 1000 bytes."}'


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"json": {"prompt": "x" * 2000}}, id="json"),
        pytest.param({"files": {"file": ("a.bin", b"x" * 2000)}}, id="multipart"),
        pytest.param({"data": {"label": "x" * 2000}}, id="urlencoded"),
    ],
)
def test_body_over_the_limit_is_413(limited: httpx2.Client, kwargs: dict[str, object]) -> None:
    response = limited.post("upload/run", **kwargs)  # type: ignore[arg-type]
    assert (response.status_code, response.content) == (413, TOO_LARGE)


def test_body_at_the_limit_is_served(limited: httpx2.Client) -> None:
    prompt = "x" * (LIMITED - len('{"prompt":""}'))
    response = limited.post("image/run", content=f'{{"prompt":"{prompt}"}}'.encode())
    assert response.status_code == 200


@pytest.mark.parametrize(
    "content",
    [b"--x\r\nnot a form", b"\xff\xfe"],
    ids=["broken-multipart", "binary"],
)
def test_malformed_form_is_422(client: httpx2.Client, content: bytes) -> None:
    response = client.post("upload/run", content=content, headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code in (422,), response.content
    assert response.json()["detail"][0]["loc"] == ["body"]
