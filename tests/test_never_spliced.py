"""Never spliced (contract section 6): a result the server does not keep may differ from run to
run, so a Range or a resumed download of it gets the whole answer of one run, never bytes of two.

Only a *stored* result answers Range: a file that was there before the run (and, with the result
store, a cached or a job's result). Bytes a run made, an image encoded per request and a temp
file the run created are sent with ``Accept-Ranges: none`` and their Range is ignored (200, the
whole body), but for a continuation (one range from past the first byte, no If-Range: what
``curl -C -``, ``wget -c`` and ``aria2c -c`` send), which is a 409: wget appends the tail of a 200.

The in-process tests run on every frontend; the rest drive curl, wget and aria2c, which resume
without If-Range, against real uvicorn and gunicorn processes and a pipeline whose bytes differ
on every run (``tests/pipelines/fresh_bytes``: random bytes followed by their own SHA-256, so any
file that mixes two runs fails the check).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.responses import FileResponse, Response

from dualserve import Media
from dualserve.core.framework_responses import read_framework_response
from dualserve.core.http import render
from dualserve.core.request import Request
from dualserve.core.returns import BytesResult, PathResult, path_result, resolve
from tests.conftest import assert_alike
from tests.servers import MOUNTED, dualserve_run
from tests.wrappers import DATA

RANGE_DATA = (DATA / "range.bin").read_bytes()
PIPELINES = Path(__file__).parent / "pipelines"
FRESH_SIZE = 2 * 1024 * 1024 + 32  # tests/pipelines/fresh_bytes: 2 MiB and a SHA-256
CUT = 1_000_000  # where an interrupted download stopped


# --- every frontend, in process -----------------------------------------------------------------


NOT_RESUMABLE = (
    b'{"detail":"This answer is made anew by every run and is not stored, so a download of it cannot be resumed: '
    b'request it again without Range."}'
)


@pytest.mark.parametrize(
    "headers",
    [
        {"range": "bytes=0-9"},
        {"range": "bytes=0-"},  # a media element's first request
        {"range": "bytes=-10"},
        {"range": "bytes=0-1,5-6"},
        {"range": "bytes=abc"},
        {"range": "bytes=500-", "if-range": '"stale"'},  # an If-Range client replaces its copy on a 200
    ],
)
def test_a_run_s_bytes_answer_a_range_with_the_whole_body(client: httpx2.Client, headers: dict[str, str]) -> None:
    response = client.get("range_bytes/run", headers=headers)
    assert (response.status_code, response.content) == (200, RANGE_DATA)
    assert response.headers["accept-ranges"] == "none"
    assert response.headers["content-length"] == str(len(RANGE_DATA))
    assert "content-range" not in response.headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("value", ["bytes=500-", "bytes=1-1", "bytes=5000-", "BYTES=10-99999999"])
def test_a_continuation_of_a_run_s_bytes_is_409(client: httpx2.Client, method: str, value: str) -> None:
    # curl -C -, wget -c, aria2c -c: the client holds the head of another run's answer and would
    # append whatever comes (wget skips as many bytes of a 200 as it holds, and appends the rest).
    response = client.request(method, "range_bytes/run", headers={"range": value})
    assert response.status_code == 409
    assert response.content == (NOT_RESUMABLE if method == "GET" else b"")
    assert (response.headers["content-type"], response.headers["accept-ranges"]) == ("application/json", "none")


def test_json_ignores_a_range_and_refuses_a_continuation(client: httpx2.Client) -> None:
    plain = client.get("none/run", headers={"range": "bytes=0-1"})
    assert (plain.status_code, plain.content, "accept-ranges" in plain.headers) == (200, b"null", False)
    continued = client.get("none/run", headers={"range": "bytes=2-"})
    assert (continued.status_code, continued.content) == (409, NOT_RESUMABLE)


def test_a_matching_if_range_does_not_make_a_run_s_bytes_ranged(client: httpx2.Client) -> None:
    etag = client.get("range_bytes/run").headers["etag"]
    for value in ("bytes=0-9", "bytes=10-"):
        response = client.get("range_bytes/run", headers={"range": value, "if-range": etag})
        assert (response.status_code, response.content) == (200, RANGE_DATA)


def test_a_continuation_of_a_temp_file_is_409_and_the_file_deleted(client: httpx2.Client, tmp_path: Path) -> None:
    response = client.get("temp_file/run", params={"directory": str(tmp_path)}, headers={"range": "bytes=10-"})
    assert response.status_code == 409
    assert list(tmp_path.iterdir()) == []


def test_a_run_s_bytes_still_answer_if_none_match_with_304(client: httpx2.Client) -> None:
    # A 304 only confirms that the client's copy is this run's bytes: safe to keep.
    etag = client.get("range_bytes/run").headers["etag"]
    response = client.get("range_bytes/run", headers={"if-none-match": etag, "range": "bytes=0-9"})
    assert (response.status_code, response.headers["etag"]) == (304, etag)


def test_head_of_a_run_s_bytes_offers_no_ranges(client: httpx2.Client) -> None:
    response = client.head("range_bytes/run")
    assert (response.status_code, response.headers["accept-ranges"]) == (200, "none")


@pytest.mark.parametrize("path", ["range_path/run", "fl_send_file/run"], ids=["path", "send-file"])
def test_a_stored_file_answers_a_range(client: httpx2.Client, path: str) -> None:
    assert client.get(path).headers["accept-ranges"] == "bytes"
    response = client.get(path, headers={"range": "bytes=0-9"})
    assert (response.status_code, response.content) == (206, RANGE_DATA[:10])
    assert response.headers["content-range"] == f"bytes 0-9/{len(RANGE_DATA)}"
    assert client.get(path, headers={"range": "bytes=5000-"}).status_code == 416


def test_a_file_the_run_wrote_is_not_stored(client: httpx2.Client) -> None:
    # Returned as a Path, but written by this run (outside the temp directory, so kept): the next
    # run writes other bytes, so a continuation of it would splice two runs.
    response = client.get("written_file/run", headers={"range": "bytes=0-9"})
    assert (response.status_code, len(response.content), response.headers["accept-ranges"]) == (200, 3000, "none")
    assert client.get("written_file/run", headers={"range": "bytes=10-"}).status_code == 409


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("range_bytes/run", {"range": "bytes=0-9"}),
        ("range_bytes/run", {"range": "bytes=10-"}),
        ("range_image/run", {"range": "bytes=0-9"}),
        ("range_path/run", {"range": "bytes=0-9"}),
        ("hh_bytes/run?prompt=x", {"range": "bytes=0-9"}),
    ],
    ids=["bytes", "bytes-continued", "image", "file", "framework-bytes"],
)
def test_identical_everywhere(clients: dict[str, httpx2.Client], path: str, headers: dict[str, str]) -> None:
    assert_alike(clients, lambda c: c.get(path, headers=headers))


# --- the core: what is stored -------------------------------------------------------------------


def _answer(result: BytesResult | PathResult, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    reply = render(result, Request("GET", headers))
    return reply.status_code, dict(reply.headers)


def test_stored_bytes_answer_a_range() -> None:
    # What the result store and the cache serve: the same bytes for the representation's life.
    status, headers = _answer(BytesResult(body=RANGE_DATA, media_type="x/y", stored=True), {"range": "bytes=0-9"})
    assert (status, headers["accept-ranges"], headers["content-range"]) == (206, "bytes", "bytes 0-9/1000")


def test_a_file_deleted_after_the_answer_is_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(RANGE_DATA)
    # Whatever `stored` says: the serving layer marks a temp file the run made delete_after.
    result = path_result(path, None, stored=True, delete_after=True)
    status, headers = _answer(result, {"range": "bytes=0-9"})
    assert (status, headers["accept-ranges"]) == (200, "none")
    assert _answer(result, {"range": "bytes=10-"})[0] == 409


def test_what_is_stored_where_results_are_made(tmp_path: Path) -> None:
    path = tmp_path / "kept.bin"
    path.write_bytes(RANGE_DATA)
    stored: dict[str, Any] = {
        "bytes": resolve(RANGE_DATA),
        "path": resolve(path),
        "media-path": resolve(Media(path)),
        "media-delete-after": resolve(Media(path, delete_after=True)),
        "media-bytes": resolve(Media(RANGE_DATA)),
        "file-response": read_framework_response(FileResponse(path), []),
        "response": read_framework_response(Response(RANGE_DATA), []),
    }
    assert {name: getattr(result, "stored", None) for name, result in stored.items()} == {
        "bytes": False,
        "path": True,
        "media-path": True,
        "media-delete-after": False,
        "media-bytes": False,
        "file-response": True,
        "response": False,
    }


# --- real tools against real servers ------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (Debian: apt-get install curl wget aria2); CI installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with dualserve_run(PIPELINES, request.param) as url:
        yield request.param, url


@pytest.fixture(params=["root", "mounted"])
def base(request: pytest.FixtureRequest, server: tuple[str, str]) -> str:
    name, url = server
    return url + (MOUNTED[name] if request.param == "mounted" else "")


def one_run(data: bytes) -> bool:
    """Whether ``data`` is the whole answer of exactly one run of ``fresh_bytes``."""
    return len(data) == FRESH_SIZE and hashlib.sha256(data[:-32]).digest() == data[-32:]


def interrupted(url: str, target: Path) -> bytes:
    """Run A's first bytes in ``target``, as a download cut off after CUT bytes leaves them."""
    first = httpx2.get(url, timeout=30).content
    assert one_run(first)
    target.write_bytes(first[:CUT])
    return first[:CUT]


def assert_never_spliced(completed: subprocess.CompletedProcess[str], target: Path, before: bytes) -> None:
    """A resumed download either failed and left the partial file as it was, or ended with the
    whole answer of one run. Two runs' bytes are random, so a file of run A's head and run B's
    tail fails ``one_run`` (its SHA-256 is of neither run), as do the appended whole body of B
    (too long) and a partial file the tool called complete (too short). Before the 409, wget -c
    got a 200 here, skipped its first CUT bytes and appended the rest: 2 MiB that failed this."""
    data = target.read_bytes() if target.exists() else b""
    if completed.returncode != 0:
        assert data == before, (completed.returncode, len(data), completed.stderr[-500:])
    else:
        assert one_run(data), (len(data), completed.stderr[-500:])


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_pipeline_differs_on_every_run(base: str) -> None:
    first, second = (httpx2.get(f"{base}/fresh_bytes/run", timeout=30) for _ in range(2))
    assert one_run(first.content) and one_run(second.content)
    assert first.content != second.content
    assert first.headers["accept-ranges"] == "none"


def test_curl_range_then_resume(base: str, tmp_path: Path) -> None:
    curl = _tool("curl")
    url, part = f"{base}/fresh_bytes/run", tmp_path / "part"
    # The Range is ignored: curl saves the whole answer of one run.
    completed = _run([curl, "-sS", "-r", "0-999999", "-o", str(part), url], tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert one_run(part.read_bytes())
    # Cut off after CUT bytes, then resumed: curl sends Range with no If-Range, gets a 409 and
    # fails (exit 33: "doesn't seem to support byte ranges"), the partial file untouched.
    before = interrupted(url, part)
    completed = _run([curl, "-sS", "-C", "-", "-o", str(part), url], tmp_path)
    assert_never_spliced(completed, part, before)


def test_wget_continue(base: str, tmp_path: Path) -> None:
    wget = _tool("wget")
    url, part = f"{base}/fresh_bytes/run", tmp_path / "part"
    before = interrupted(url, part)
    # wget -c takes a 200 to its Range as the same bytes (it skips what it holds and appends the
    # rest); the 409 is an error to it (exit 8), the partial file untouched.
    completed = _run([wget, "-q", "-c", "-O", str(part), url], tmp_path)
    assert_never_spliced(completed, part, before)


def test_aria2c_segments(base: str, tmp_path: Path) -> None:
    aria2c = _tool("aria2c")
    command = [aria2c, "-q", "-x4", "-s4", "-k1M", "--allow-overwrite=true", "-d", str(tmp_path), "-o", "out"]
    completed = _run([*command, f"{base}/fresh_bytes/run"], tmp_path)
    # Four segments would be four runs; with Accept-Ranges: none and 200s it is one download.
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert one_run((tmp_path / "out").read_bytes())


def test_aria2c_continue(base: str, tmp_path: Path) -> None:
    aria2c = _tool("aria2c")
    url, part = f"{base}/fresh_bytes/run", tmp_path / "part"
    before = interrupted(url, part)
    command = [aria2c, "-q", "-c", "-x4", "-s4", "-k1M", "-d", str(tmp_path), "-o", "part", url]
    assert_never_spliced(_run(command, tmp_path), part, before)


@pytest.mark.parametrize("tool", ["curl", "wget", "aria2c"])
def test_a_stored_file_resumes(base: str, tmp_path: Path, tool: str) -> None:
    # The control: a file kept on disk is resumed with a 206, so the tools do resume when it is safe.
    found = _tool(tool)
    url, part = f"{base}/data_file/run", tmp_path / "part"
    part.write_bytes(RANGE_DATA[:400])
    command = {
        "curl": [found, "-sS", "-C", "-", "-o", str(part), url],
        "wget": [found, "-q", "-c", "-O", str(part), url],
        "aria2c": [found, "-q", "-c", "-d", str(tmp_path), "-o", "part", url],
    }[tool]
    completed = _run(command, tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert part.read_bytes() == RANGE_DATA
