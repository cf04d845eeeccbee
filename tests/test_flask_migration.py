"""The Flask-to-FastAPI migration example: the legacy app under `flask run`, the strangler under
uvicorn (nothing migrated yet, then every route migrated), and the parity check between them (the
CLI and the pytest helper), breaking and additive differences told apart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from dualserve.parity import Answer, Case, assert_parity, classify, compare, load_cases
from tests.servers import DUALSERVE, free_port, running

MIGRATION = Path(__file__).parent.parent / "examples" / "flask_migration"
BIN = Path(sys.executable).parent
CASES = load_cases(MIGRATION / "cases.json")

# What the strangler gains over the legacy app, case by case: nothing a client could trip on.
ADDITIVE = {
    "GET /cat.png": "adds accept-ranges, etag",
    "GET /cat.png?size=abc": "status 500 -> 422",
    # A PNG drawn per request is not stored: its Range is ignored, 200 as the legacy app sent (never
    # spliced), and it gains only the validator and "Accept-Ranges: none".
    "GET /cat.png [Range: bytes=0-99]": "adds accept-ranges, etag",
    "POST /cat.png": "error 405: a JSON body instead of an HTML page",
    "GET /files/nope.txt": "error 404: a JSON body instead of an HTML page",
    "GET /files/logo.png [Range: bytes=0-9,20-29]": "status 416 -> 200",
    "GET /report": "adds etag",
    "POST /health": "error 405: a JSON body instead of an HTML page",
}


@pytest.fixture(scope="module")
def legacy() -> Iterator[str]:
    port = free_port()
    command = [str(BIN / "flask"), "--app", str(MIGRATION / "legacy" / "app.py"), "run", "--port", str(port)]
    with running(command, port, ready_path="/health") as started:
        yield started.url


def _uvicorn(target: str) -> tuple[list[str], int]:
    port = free_port()
    return [str(BIN / "uvicorn"), "--app-dir", str(MIGRATION), target, "--port", str(port)], port


@pytest.fixture(scope="module")
def strangler() -> Iterator[str]:
    command, port = _uvicorn("strangler:app")
    with running(command, port) as started:
        yield started.url


@pytest.fixture(scope="module")
def twin() -> Iterator[str]:
    command, port = _uvicorn("legacy.fastapi_twin:app")
    with running(command, port, ready_path="/cat.png") as started:
        yield started.url


def test_the_cases_cover_what_the_migrating_user_found() -> None:
    labels = {case.label() for case in CASES}
    assert {
        "GET /files/nope.txt",  # a path parameter
        "POST /cat.png",  # a method the legacy route lacks
        "GET /cat.png?size=abc",
        "GET /cat.png [Range: bytes=0-99]",
        "GET /files/logo.png [Range: bytes=0-9,20-29]",
        "GET /health",
    } <= labels


def test_migrated_app_has_no_breaking_difference(legacy: str, strangler: str) -> None:
    differences = assert_parity(legacy, strangler, CASES)
    assert all(not difference.breaking for difference in differences)


def test_what_the_migrated_app_gains_is_reported_as_additive(legacy: str, strangler: str) -> None:
    differences = compare(legacy, strangler, CASES)
    for label, what in ADDITIVE.items():
        assert any(d.case.label() == label and d.what.startswith(what) for d in differences), (label, differences)
    assert {str(d).split(":", 1)[0] for d in differences} == {"additive"}
    assert not [d for d in differences if d.case.label() == "GET /cat.png [Range: bytes=0-99]" and "status" in d.what]
    # /health answers with jsonify's own bytes, newline and all: no difference at all.
    assert not [d for d in differences if d.case.path == "/health" and d.case.method == "GET"]
    with pytest.raises(AssertionError, match="additive: GET /cat.png"):
        assert_parity(legacy, strangler, CASES, strict=True)


def parity_cli(a: str, b: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [DUALSERVE, "parity", "--a", a, "--b", b, "--cases", str(MIGRATION / "cases.json"), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_parity_cli(legacy: str, strangler: str) -> None:
    completed = parity_cli(legacy, strangler)
    assert completed.returncode == 0, completed.stdout
    lines = completed.stdout.splitlines()
    assert lines and all(line.startswith("additive: ") for line in lines), lines
    assert "additive: GET /cat.png [Range: bytes=0-99]: adds accept-ranges, etag" in completed.stdout
    assert f"{len(CASES)} cases: 0 breaking, {len(lines)} additive differences" in completed.stderr
    assert parity_cli(legacy, strangler, "--strict").returncode == 1


def test_nothing_migrated_yet_means_no_difference_at_all(legacy: str) -> None:
    """README step 3: the strangler with no route migrated answers exactly as the legacy app."""
    command, port = _uvicorn("strangler:unmigrated")
    with running(command, port) as started:
        completed = parity_cli(legacy, started.url, "--strict")
    assert completed.returncode == 0, completed.stdout
    assert f"{len(CASES)} cases: 0 breaking, 0 additive differences" in completed.stderr


def test_parity_catches_the_streaming_response_port(legacy: str, twin: str) -> None:
    lines = [str(difference) for difference in compare(legacy, twin, CASES)]
    assert "breaking: GET /cat.png: content-length '1964' != None" in lines
    assert any(line.startswith("breaking: HEAD /cat.png: status 200 != 405") for line in lines)
    assert any(line.startswith("breaking: GET /report: content-disposition") for line in lines)
    assert any(line.startswith("breaking: GET /health: status 200 != 404") for line in lines)
    assert parity_cli(legacy, twin).returncode == 1


def test_unmigrated_paths_fall_through_to_flask(strangler: str) -> None:
    # Every legacy route is migrated; what is left is Flask's own answer (its HTML 404).
    response = httpx2.get(f"{strangler}/not-a-route", timeout=10)
    assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8")
    assert httpx2.get(f"{strangler}/cat/run", params={"size": 64}, timeout=10).headers["content-type"] == "image/png"


# --- the rules, without servers ------------------------------------------------------------------

HTML = {"content-type": "text/html; charset=utf-8"}
JSON = {"content-type": "application/json"}
PNG = {"content-type": "image/png"}


def _answer(status: int, headers: dict[str, str], body: bytes = b"") -> Answer:
    return Answer(status, httpx2.Headers({**headers, "content-length": str(len(body))}), body)


@pytest.mark.parametrize(
    ("case", "a", "b", "expected"),
    [
        pytest.param(
            Case("/x.png", headers={"Range": "bytes=0-1"}),
            _answer(200, PNG, b"abcd"),
            _answer(206, PNG, b"ab"),
            ["additive: GET /x.png [Range: bytes=0-1]: status 200 -> 206: the Range is honoured"],
            id="range-honoured",
        ),
        pytest.param(
            Case("/x.png", headers={"Range": "bytes=0-1"}),
            _answer(206, PNG, b"ab"),
            _answer(200, PNG, b"abcd"),
            ["breaking: GET /x.png [Range: bytes=0-1]: status 206 != 200"],
            id="range-lost",
        ),
        pytest.param(
            Case("/x.png", headers={"Range": "bytes=0-1"}),
            _answer(200, PNG, b"abcd"),
            _answer(206, JSON, b"ab"),
            ["additive: GET /x.png [Range: bytes=0-1]", "breaking: GET /x.png [Range: bytes=0-1]: content-type"],
            id="range-of-another-type",
        ),
        pytest.param(
            Case("/x.png", headers={"If-None-Match": '"a"'}),
            _answer(200, PNG, b"abcd"),
            _answer(304, {}),
            ['additive: GET /x.png [If-None-Match: "a"]: status 200 -> 304'],
            id="conditional-honoured",
        ),
        pytest.param(
            Case("/x.png?size=abc"),
            _answer(500, HTML, b"<html>"),
            _answer(422, JSON, b"{}"),
            ["additive: GET /x.png?size=abc: status 500 -> 422"],
            id="crash-named",
        ),
        pytest.param(
            Case("/files/nope"),
            _answer(404, HTML, b"<html>"),
            _answer(422, JSON, b"{}"),
            ["breaking: GET /files/nope: status 404 != 422"],
            id="404-became-422",
        ),
        pytest.param(
            Case("/files/nope"),
            _answer(404, JSON, b'{"error":1}'),
            _answer(404, JSON, b'{"detail":1}'),
            ["breaking: GET /files/nope: content-length", "breaking: GET /files/nope: body"],
            id="another-json-error",
        ),
        pytest.param(
            Case("/x.png"),
            _answer(200, {**PNG, "etag": '"a"'}, b"abcd"),
            _answer(200, {**PNG, "accept-ranges": "bytes"}, b"abcd"),
            ["breaking: GET /x.png: drops etag", "additive: GET /x.png: adds accept-ranges"],
            id="validators",
        ),
        pytest.param(
            Case("/health"),
            _answer(200, JSON, b'{"ok":true}\n'),
            _answer(200, JSON, b'{"ok":true}'),
            ["breaking: GET /health: content-length '12' != '11'", "breaking: GET /health: body"],
            id="jsonify-newline",
        ),
    ],
)
def test_classify(case: Case, a: Answer, b: Answer, expected: list[str]) -> None:
    lines = [str(difference) for difference in classify(case, a, b)]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), lines
