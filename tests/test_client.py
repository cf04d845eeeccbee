"""dualserve.client, `dualserve call` and forwarding, against a real server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from dualserve.client import AsyncClient, Client, ServerError
from tests.servers import DUALSERVE, Sampler, dualserve_command, running

PIPELINES = Path(__file__).parent / "pipelines"


def opened(path: Path) -> tuple[str | None, tuple[int, int]]:
    with Image.open(path) as image:
        return image.format, image.size


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    command, port = dualserve_command(PIPELINES, "uvicorn")
    with running(command, port) as started:
        yield started.url, started.process.pid


@pytest.fixture(params=["", "/flask"], ids=["fastapi", "flask"])
def url(request: pytest.FixtureRequest, server: tuple[str, int]) -> str:
    return server[0] + str(request.param)


def test_binary_result(url: str, tmp_path: Path) -> None:
    with Client(url) as client:
        result = client.run("picture", width=12, height=7)
    assert result.media_type == "image/png"
    assert result.image().size == (12, 7)
    saved = result.save(tmp_path / "picture.png")
    assert opened(saved)[1] == (12, 7)


@pytest.mark.parametrize(
    ("accept", "pil_format"), [("image/webp", "WEBP"), ("application/json", "PNG"), ("image/jpeg", "JPEG")]
)
def test_one_result_type_whatever_the_format(url: str, accept: str, pil_format: str) -> None:
    with Client(url) as client:
        result = client.run("picture", accept=accept, width=6, height=6)
    assert result.image().format == pil_format
    assert result.media_type.startswith("image/")


@pytest.mark.parametrize("accept", [None, "application/zip", "application/json"])
def test_several_items_zip_or_json(url: str, accept: str | None, tmp_path: Path) -> None:
    with Client(url) as client:
        result = client.run("several", accept=accept)
    assert [item.image().size for item in result.items] == [(10, 10), (11, 10), (12, 10)]
    assert result.image().size == (10, 10)
    paths = result.save_all(tmp_path)
    assert [opened(path)[1] for path in paths] == [(10, 10), (11, 10), (12, 10)]


def test_provider_base64_json_is_decoded(url: str) -> None:
    with Client(url) as client:
        result = client.run("provider_b64")
    assert (result.media_type, result.image().size) == ("image/png", (9, 9))


@pytest.mark.parametrize("data_url", [False, True])
def test_media_from_base64_is_served_as_binary(url: str, data_url: bool) -> None:
    response = httpx2.post(f"{url}/from_b64/run", json={"data_url": data_url}, timeout=10)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'inline; filename="provider.png"'
    assert Image.open(io.BytesIO(response.content)).size == (8, 5)


def test_errors_carry_the_servers_detail(url: str) -> None:
    with Client(url) as client, pytest.raises(ServerError) as info:
        client.run("picture", width="wide")
    assert info.value.status_code == 422
    assert info.value.detail[0]["loc"] == ["body", "width"]


def test_download_streams_to_disk(url: str, tmp_path: Path) -> None:
    with Client(url) as client:
        path = client.download("big_stream", tmp_path / "big.bin", megabytes=8, progress=False)
    data = path.read_bytes()
    assert len(data) == 8 * 1024 * 1024
    assert data[:256] == bytes(range(256))


def test_async_client(url: str, tmp_path: Path) -> None:
    async def main() -> tuple[tuple[int, int], int]:
        async with AsyncClient(url) as client:
            result = await client.run("picture", width=3, height=4)
            path = await client.download("big_stream", tmp_path / "s.bin", megabytes=2, progress=False)
            return result.image().size, path.stat().st_size

    assert asyncio.run(main()) == ((3, 4), 2 * 1024 * 1024)


def call(url: str, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DUALSERVE, "call", *arguments, "--url", url], capture_output=True, timeout=60, check=False)


def test_cli_call_saves_an_image(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    completed = call(url, "picture", "-p", "width=12", "-p", "height=5", "-o", str(out))
    assert completed.returncode == 0, completed.stderr
    assert opened(out)[1] == (12, 5)


def test_cli_call_accept_webp_and_json(url: str, tmp_path: Path) -> None:
    webp = tmp_path / "out.webp"
    assert call(url, "picture", "-p", "width=4", "-o", str(webp), "--accept", "image/webp").returncode == 0
    assert opened(webp)[0] == "WEBP"
    decoded = tmp_path / "decoded.png"
    assert call(url, "picture", "-o", str(decoded), "--accept", "application/json").returncode == 0
    assert opened(decoded)[0] == "PNG"


def test_cli_call_prints_json_and_reports_errors(url: str) -> None:
    completed = call(url, "provider_b64", "--accept", "application/json")
    assert completed.returncode == 0
    bad = call(url, "picture", "-p", "width=wide")
    assert bad.returncode == 1
    assert b"422" in bad.stderr and b"width" in bad.stderr


def test_forward_relays_200_mb_with_flat_memory(url: str, server: tuple[str, int]) -> None:
    base, pid = server
    upstream = f"{base}/big_stream/run?megabytes=200"
    digest = hashlib.sha256()
    size = 0
    with Sampler(pid, interval=0.02) as memory:
        with httpx2.stream("GET", f"{url}/relay/run", params={"url": upstream}, timeout=120) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            for chunk in response.iter_raw():
                digest.update(chunk)
                size += len(chunk)
    before, peak = memory.rss[0], max(memory.rss)
    expected = hashlib.sha256((bytes(range(256)) * 256) * (200 * 16)).hexdigest()
    assert (size, digest.hexdigest()) == (200 * 1024 * 1024, expected)
    assert (peak - before) / 2**20 < 64, f"the server grew by {(peak - before) / 2**20:.0f} MB while relaying"


def test_forward_upstream_error_is_502(url: str, server: tuple[str, int]) -> None:
    response = httpx2.get(f"{url}/relay/run", params={"url": f"{server[0]}/nope/run"}, timeout=30)
    assert response.status_code == 502
    assert response.json() == {"detail": "The upstream service answered 404."}


def test_download_shows_progress_when_asked(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(url) as client:
        client.download("big_stream", tmp_path / "p.bin", megabytes=1, progress=True)
    assert "p.bin" in capsys.readouterr().err
