"""What only a real server shows: disconnects, chunked uploads, streaming, temp files, SIGTERM.

Each test runs on every server and at both mount points (uvicorn: FastAPI at /, Flask at /flask;
gunicorn and `flask run`: Flask at /, FastAPI at /fastapi). Waits are bounded liveness checks
("within a few seconds"), never speed assertions.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx2
import pytest

from tests.servers import MOUNTED, dualserve_command, dualserve_run, running

PIPELINES = Path(__file__).parent / "pipelines"
SERVERS = ["uvicorn", "gunicorn", "flask"]
LIVENESS = 5.0  # seconds a cleanup may take before we call it lost; the contract says about one


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with dualserve_run(PIPELINES, request.param, "--max-body-size", str(4 * 1024 * 1024)) as url:
        yield request.param, url


@pytest.fixture(params=["root", "mounted"])
def base(request: pytest.FixtureRequest, server: tuple[str, str]) -> str:
    name, url = server
    return url + (MOUNTED[name] if request.param == "mounted" else "")


def eventually(condition: Callable[[], bool], timeout: float = LIVENESS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def read_then_hang_up(url: str, want: int = 4096) -> bytes:
    """GET ``url`` over a raw socket, read the headers and some body, then close the socket."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < want:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return received


@pytest.mark.parametrize("pipeline", ["endless", "endless_async"])
def test_disconnect_closes_the_generator(base: str, tmp_path: Path, pipeline: str) -> None:
    marker = tmp_path / "closed"
    head = read_then_hang_up(f"{base}/{pipeline}/run?{urlencode({'marker': str(marker)})}")
    assert head.startswith(b"HTTP/1.1 200")
    assert eventually(marker.exists), "the generator was not closed after the client left"
    # The server is still serving, with its threads free.
    assert httpx2.get(f"{base}/status", timeout=10).status_code == 200


def test_disconnect_mid_download_deletes_the_temp_file(base: str, tmp_path: Path) -> None:
    head = read_then_hang_up(f"{base}/big_temp/run?{urlencode({'directory': str(tmp_path)})}", want=65536)
    assert head.startswith(b"HTTP/1.1 200")
    assert eventually(lambda: not any(tmp_path.iterdir())), "the temp file outlived an aborted download"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_full_download_deletes_the_temp_file(base: str, tmp_path: Path, method: str) -> None:
    response = httpx2.request(method, f"{base}/big_temp/run", params={"directory": str(tmp_path)}, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(64 * 1024 * 1024)
    if method == "GET":
        assert len(response.content) == 64 * 1024 * 1024
    assert eventually(lambda: not any(tmp_path.iterdir()))


def test_first_chunk_arrives_before_the_generator_ends(base: str, tmp_path: Path) -> None:
    # The generator waits for a file that the test writes only once it has the first chunk:
    # a server that buffered the stream would never deliver it, and the generator would time out.
    signal_file = tmp_path / "go"
    with httpx2.stream(
        "GET", f"{base}/first_then_wait/run", params={"signal": str(signal_file)}, timeout=30
    ) as response:
        chunks = response.iter_raw()
        received = next(chunks)
        while not received.startswith(b"first;") and len(received) < 6:
            received += next(chunks)
        signal_file.write_text("go")
        received += b"".join(chunks)
    assert received == b"first;released"


def chunked(data: bytes, size: int = 7000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_json_body_arrives_whole(base: str) -> None:
    text = "é" * 50_000
    body = json.dumps({"data": text}).encode()
    response = httpx2.post(
        f"{base}/echo_size/run", content=chunked(body), headers={"content-type": "application/json"}, timeout=30
    )
    assert "content-length" not in response.request.headers
    assert response.json() == {"size": len(text.encode()), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def test_chunked_multipart_upload_arrives_whole(base: str) -> None:
    payload = bytes(range(256)) * 4000
    boundary = "dualserveboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = httpx2.post(
        f"{base}/echo_size/run",
        content=chunked(body),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.json() == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


def test_chunked_body_over_the_limit_is_413(base: str) -> None:
    body = json.dumps({"data": "x" * (5 * 1024 * 1024)}).encode()
    response = httpx2.post(
        f"{base}/echo_size/run", content=chunked(body, 65536), headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"The request body is larger than the limit of {4 * 1024 * 1024} bytes."}


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("where", ["root", "mounted"])
def test_sigterm_with_a_stream_open_exits(server_name: str, where: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server_name, "--graceful-timeout", "2")
    with running(command, port) as started:
        process, url = started.process, started.url
        base = url + (MOUNTED[server_name] if where == "mounted" else "")
        marker = tmp_path / "closed"
        reader = threading.Thread(target=lambda: _drain(f"{base}/endless/run", {"marker": str(marker)}), daemon=True)
        reader.start()
        assert eventually(lambda: process.poll() is None and _stream_started(reader))
        process.send_signal(signal.SIGTERM)
        assert eventually(lambda: process.poll() is not None, timeout=20), "the server ignored SIGTERM"


_started: set[int] = set()


def _drain(url: str, params: dict[str, str]) -> None:
    try:
        with httpx2.stream("GET", url, params=params, timeout=30) as response:
            for _ in response.iter_raw():
                _started.add(threading.get_ident())
    except httpx2.HTTPError:
        pass  # the server went away, as it should


def _stream_started(thread: threading.Thread) -> bool:
    return thread.ident in _started


@pytest.mark.parametrize(
    ("headers", "status", "span"),
    [
        pytest.param({}, 200, slice(None), id="full"),
        pytest.param({"range": "bytes=100-299"}, 206, slice(100, 300), id="middle"),
        pytest.param({"range": "bytes=-10"}, 206, slice(-10, None), id="suffix"),
    ],
)
def test_file_bytes_on_the_wire(base: str, headers: dict[str, str], status: int, span: slice) -> None:
    data = (Path(__file__).parent / "data" / "range.bin").read_bytes()
    response = httpx2.get(f"{base}/data_file/run", headers=headers, timeout=10)
    assert response.status_code == status
    assert response.content == data[span]
    assert response.headers["content-length"] == str(len(data[span]))
    assert response.headers["accept-ranges"] == "bytes"  # a file kept on disk: stored


def test_async_setup_and_calls_share_one_loop_on_both_frontends(server: tuple[str, str]) -> None:
    name, url = server
    # uvicorn's own loop runs in its main thread: async wrapper code runs there, from both frontends
    # (issue 14); gunicorn has no loop of its own, so the portal's thread runs it.
    loop_thread = "MainThread" if name == "uvicorn" else "dualserve-portal"
    expected = {"result": "HI", "setup_thread": loop_thread, "thread": loop_thread}
    for base in (url, url + MOUNTED[name], url):
        response = httpx2.get(f"{base}/batcher/run", params={"text": "hi"}, timeout=10)
        assert (response.status_code, response.json()) == (200, expected)


def test_client_leaving_mid_body_does_not_run_the_pipeline(base: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = json.dumps({"marker": str(marker)}).encode()
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"POST {parts.path}/record_call/run HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 1000}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)
    time.sleep(0.5)
    assert not marker.exists()
    assert httpx2.get(f"{base}/status", timeout=10).status_code == 200


@pytest.mark.parametrize("server_name", ["uvicorn", "gunicorn"])
def test_setup_runs_once_per_worker(server_name: str, tmp_path: Path) -> None:
    log = tmp_path / "setups.log"
    command, port = dualserve_command(PIPELINES, server_name, "--workers", "2")
    with running(command, port, {"DUALSERVE_TEST_SETUP_LOG": str(log)}) as started:
        assert eventually(lambda: log.exists() and len(log.read_text().split()) >= 2, timeout=30)
        for prefix in ("", MOUNTED[server_name]) * 4:
            assert httpx2.get(f"{started.url}{prefix}/setup_log/run", timeout=10).status_code == 200
        pids = log.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2, pids


@pytest.mark.parametrize("server_name", SERVERS)
def test_failure_mid_stream_cuts_the_body_and_says_why(server_name: str) -> None:
    command, port = dualserve_command(PIPELINES, server_name)
    with running(command, port) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            received = b""
            with pytest.raises(httpx2.HTTPError):  # the body ends before its chunked terminator
                with httpx2.stream("GET", f"{base}/midstream_fail/run", timeout=10) as response:
                    assert response.status_code == 200
                    for chunk in response.iter_raw():
                        received += chunk
            assert received == b"first"
            assert httpx2.get(f"{base}/status", timeout=10).status_code == 200
        assert eventually(lambda: started.log().count("'midstream_fail' failed after 5 bytes") >= 2)
        assert "the disk is on fire" in started.log()
