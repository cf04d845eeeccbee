"""Hostile inputs on real servers: image bombs, huge forms, oversized heads, markup in names.

Each attack is sent to a real uvicorn and gunicorn process (and `flask run` where the server
decides), at both mount points, and each asserts what now holds: a 4xx in the contract's JSON
shape, bounded memory, and a server that keeps answering others meanwhile. (Slow clients and
malformed chunked bodies are in test_slow_clients.py.) Waits are bounded liveness checks.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from dualserve.core.images import DEFAULT_MAX_IMAGE_PIXELS
from tests.servers import MOUNTED, Sampler, dualserve_command, running, tree_rss
from tests.test_examples import EXAMPLES

SERVERS = ["uvicorn", "gunicorn"]
MB = 1024 * 1024


def png_bomb(width: int, height: int, color_type: int, channels: int) -> bytes:
    """A valid PNG of ``width`` x ``height`` zeros, compressed row by row, never held decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0, then the row's samples
    data = b"".join([*(compressor.compress(row) for _ in range(height)), compressor.flush()])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    # The probe's two: 657 KB that decode to 2.1 GB (RGBA), and 389 KB that decode to 400 MB (grey).
    return {"rgba-13000": png_bomb(13000, 13000, 6, 4), "grey-20000": png_bomb(20000, 20000, 0, 1)}


@pytest.fixture(scope="module", params=SERVERS)
def examples_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, Callable[[], str]]]:
    command, port = dualserve_command(EXAMPLES, request.param)
    with running(command, port) as started:
        yield started.url, started.process.pid, started.log


@pytest.mark.parametrize("bomb", ["rgba-13000", "grey-20000"])
@pytest.mark.parametrize("where", ["root", "mounted"])
def test_an_image_bomb_is_a_413_and_costs_little_memory(
    examples_server: tuple[str, int, Callable[[], str]], bombs: dict[str, bytes], bomb: str, where: str
) -> None:
    url, pid, log = examples_server
    base = url if where == "root" else url + _mounted(url, log)
    with Sampler(pid, interval=0.05) as sampler:
        for _ in range(3):
            files = {"image": ("bomb.png", bombs[bomb], "image/png")}
            response = httpx2.post(f"{base}/thumbnail/run", files=files, timeout=30)
            assert response.status_code == 413, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {
                "detail": f"The image is larger than the limit of {DEFAULT_MAX_IMAGE_PIXELS} pixels."
            }
    assert max(sampler.rss) - sampler.rss[0] < 300 * MB, [rss // MB for rss in sampler.rss]
    # An image under the limit is still made into a thumbnail.
    picture = io.BytesIO()
    Image.new("RGB", (1200, 800), "teal").save(picture, "PNG")
    files = {"image": ("ok.png", picture.getvalue(), "image/png")}
    assert httpx2.post(f"{base}/thumbnail/run", files=files, timeout=30).status_code == 200
    assert "Traceback" not in log()


def _mounted(url: str, log: Callable[[], str]) -> str:
    # The module fixture knows its server by its port alone; ask the server which frontend is at /.
    root_is_fastapi = httpx2.get(f"{url}/flask/status", timeout=10).status_code == 200
    return MOUNTED["uvicorn"] if root_is_fastapi else MOUNTED["gunicorn"]


def test_max_image_pixels_is_the_operators_to_set() -> None:
    command, port = dualserve_command(EXAMPLES, "uvicorn", "--max-image-pixels", "1000000")
    with running(command, port) as started:
        for base in (started.url, started.url + "/flask"):
            for size, status in (((1000, 1000), 200), ((1001, 1000), 413)):
                picture = io.BytesIO()
                Image.new("L", size).save(picture, "PNG")
                files = {"image": ("picture.png", picture.getvalue(), "image/png")}
                response = httpx2.post(f"{base}/thumbnail/run", files=files, timeout=30)
                assert response.status_code == status, response.text
            assert response.json() == {"detail": "The image is larger than the limit of 1000000 pixels."}


@pytest.mark.parametrize("server_name", SERVERS)
def test_memory_is_given_back_after_large_uploads(server_name: str) -> None:
    # Twelve 49-megapixel uploads, four at a time on both frontends: 150 MB decoded each. With
    # glibc's defaults the server kept 1.7 GB afterwards; dualserve run tunes malloc (see cli.py).
    picture = io.BytesIO()
    Image.new("RGB", (7000, 7000), "teal").save(picture, "JPEG")
    files = {"image": ("big.jpg", picture.getvalue(), "image/jpeg")}
    command, port = dualserve_command(EXAMPLES, server_name)
    with running(command, port) as started:
        bases = [started.url, started.url + MOUNTED[server_name]]
        before = tree_rss(started.process.pid)
        statuses: list[int] = []

        def upload(base: str) -> None:
            statuses.append(httpx2.post(f"{base}/thumbnail/run", files=files, timeout=120).status_code)

        for _ in range(3):
            uploads = [threading.Thread(target=upload, args=(bases[index % 2],)) for index in range(4)]
            for thread in uploads:
                thread.start()
            for thread in uploads:
                thread.join()
        assert statuses == [200] * 12
        after = tree_rss(started.process.pid)
        assert after - before < 150 * MB, (before // MB, after // MB)


# --- Forms: bounded, and parsed off the event loop ---------------------------------------------


def _answers_meanwhile(url: str, send: Callable[[], httpx2.Response]) -> tuple[httpx2.Response, list[float]]:
    """Send the attack in a thread and time ``/status`` at both mount points while it goes on."""
    outcome: list[httpx2.Response] = []
    attack = threading.Thread(target=lambda: outcome.append(send()))
    attack.start()
    waits: list[float] = []
    try:
        while attack.is_alive() or not waits:
            for path in ("/status", "/flask/status"):
                started = time.monotonic()
                assert httpx2.get(url + path, timeout=10).status_code == 200
                waits.append(time.monotonic() - started)
            time.sleep(0.05)
    finally:
        attack.join()
    return outcome[0], waits


@pytest.fixture(scope="module")
def uvicorn_examples() -> Iterator[str]:
    command, port = dualserve_command(EXAMPLES, "uvicorn")
    with running(command, port) as started:
        yield started.url


@pytest.mark.parametrize("prefix", ["", "/flask"])
def test_a_form_of_millions_of_fields_is_refused_and_the_loop_goes_on(uvicorn_examples: str, prefix: str) -> None:
    body = b"&".join(b"f%07d=1" % index for index in range(3_000_000))  # 32 MB
    assert len(body) > 30 * MB

    def send() -> httpx2.Response:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        return httpx2.post(f"{uvicorn_examples}{prefix}/pillow_image/run", content=body, headers=headers, timeout=60)

    response, waits = _answers_meanwhile(uvicorn_examples, send)
    assert response.status_code == 413
    assert response.json() == {"detail": "The form has more than 1000 fields."}
    assert max(waits) < 1.0, waits


@pytest.mark.parametrize("prefix", ["", "/flask"])
def test_a_20_mb_multipart_file_name_is_refused_and_the_loop_goes_on(uvicorn_examples: str, prefix: str) -> None:
    boundary = b"x" * 16
    name = b"n" * (20 * MB)
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="' + name + b'"\r\n'
        b"Content-Type: image/png\r\n\r\nPNG\r\n--" + boundary + b"--\r\n"
    )

    def send() -> httpx2.Response:
        headers = {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}
        return httpx2.post(f"{uvicorn_examples}{prefix}/thumbnail/run", content=body, headers=headers, timeout=60)

    response, waits = _answers_meanwhile(uvicorn_examples, send)
    assert response.status_code == 413
    assert response.json() == {"detail": "The form has more than 1000 parts or a field over 1048576 bytes."}
    assert max(waits) < 1.0, waits


# --- Request heads: bounded under every server, refused in JSON ---------------------------------


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is and read the whole answer (the server closes after an error)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # the server may answer and close before it has read everything
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


HEADS = {
    "50 MB header": (b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (50 * MB) + b"\r\n\r\n", 431),
    "100 KB target": (b"GET /status?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "200 fields": (
        b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        431,
    ),
    "malformed line": (b"GET /status HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
}


@pytest.fixture(scope="module", params=["uvicorn", "flask"])
def plain_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    command, port = dualserve_command(Path(__file__).parent / "pipelines", request.param)
    with running(command, port) as started:
        yield started.url, started.process.pid


@pytest.mark.parametrize("attack", list(HEADS))
def test_an_oversized_or_malformed_head_is_a_json_error(plain_server: tuple[str, int], attack: str) -> None:
    url, pid = plain_server
    request, status = HEADS[attack]
    with Sampler(pid, interval=0.05) as sampler:
        answered, headers, body = _raw(url, request)
    assert answered == status, body
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert body.startswith(b'{"detail":"')
    assert max(sampler.rss) - sampler.rss[0] < 32 * MB
    assert httpx2.get(url + "/status", timeout=10).status_code == 200


# --- Answers that cannot be turned against a browser, on every frontend -----------------------


def test_a_404_does_not_echo_markup_and_json_is_never_sniffed(client: httpx2.Client) -> None:
    response = client.get("/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E/run")
    assert response.status_code == 404
    assert response.json() == {"detail": "Pipeline not found."}
    assert response.headers["x-content-type-options"] == "nosniff"
    plain = client.get("/no_such_pipeline/run")
    assert plain.json() == {"detail": "Pipeline 'no_such_pipeline' not found."}
    for answer in (plain, client.get("/status"), client.get("/openapi.json"), client.post("/bytes/run", json=[])):
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url


@pytest.mark.parametrize("page", ["docs", "ui"])
def test_pages_cannot_be_framed_by_another_site(client: httpx2.Client, page: str) -> None:
    response = client.get(f"/{page}")
    assert response.status_code == 200
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
