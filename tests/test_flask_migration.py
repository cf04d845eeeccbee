"""The Flask-to-FastAPI migration example: the legacy app under `flask run`, the strangler under
uvicorn, and the parity check between them (the CLI and the pytest helper)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from dualserve.parity import assert_parity, compare, load_cases
from tests.servers import DUALSERVE, free_port, running

MIGRATION = Path(__file__).parent.parent / "examples" / "flask_migration"
BIN = Path(sys.executable).parent
CASES = load_cases(MIGRATION / "cases.json")


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


def test_migrated_app_answers_as_the_legacy_one(legacy: str, strangler: str) -> None:
    assert_parity(legacy, strangler, CASES)


def parity_cli(a: str, b: str) -> subprocess.CompletedProcess[str]:
    command = [DUALSERVE, "parity", "--a", a, "--b", b, "--cases", str(MIGRATION / "cases.json")]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_parity_cli(legacy: str, strangler: str) -> None:
    completed = parity_cli(legacy, strangler)
    assert completed.returncode == 0, completed.stdout
    assert f"{len(CASES)} cases, 0 differences" in completed.stderr


def test_parity_catches_the_streaming_response_port(legacy: str, twin: str) -> None:
    differences = compare(legacy, twin, CASES)
    assert any("GET /cat.png: content-length '" in line and "!= None" in line for line in differences)
    assert any(line.startswith("HEAD /cat.png: status 200 != 405") for line in differences)
    assert any("GET /report: content-disposition" in line for line in differences)
    assert parity_cli(legacy, twin).returncode == 1


def test_unmigrated_paths_fall_through_to_flask(strangler: str) -> None:
    assert httpx2.get(f"{strangler}/health", timeout=10).json() == {"ok": True}
    assert httpx2.get(f"{strangler}/cat/run", params={"size": 64}, timeout=10).headers["content-type"] == "image/png"
