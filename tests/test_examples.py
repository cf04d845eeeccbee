"""The examples `make run` serves, on every frontend and on a real server as the README shows them."""

from __future__ import annotations

import io
import struct
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from dualserve import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, frontend_client
from tests.servers import MOUNTED, dualserve_run

EXAMPLES = Path(__file__).parent.parent / "examples" / "pipeline_wrappers"


@pytest.fixture(scope="module")
def examples_service() -> Service:
    registry = Registry.from_directory(EXAMPLES)
    assert registry.failures == {}
    return Service(registry)


@pytest.fixture(params=FRONTENDS)
def client(request: pytest.FixtureRequest, examples_service: Service) -> Iterator[httpx2.Client]:
    with frontend_client(request.param, examples_service) as client:
        yield client


def image(response: httpx2.Response) -> Image.Image:
    assert response.status_code == 200, response.content
    return Image.open(io.BytesIO(response.content))


def test_every_example_has_a_readme_with_a_curl_line() -> None:
    folders = [path.parent for path in EXAMPLES.glob("*/pipeline_wrapper.py")]
    assert len(folders) >= 4
    for folder in folders:
        readme = (folder / "README.md").read_text()
        assert f"/{folder.name}/run" in readme and "curl" in readme, folder.name


def test_pillow_image(client: httpx2.Client) -> None:
    response = client.post("pillow_image/run", json={"prompt": "hello", "width": 320, "height": 200})
    assert response.headers["content-type"] == "image/png"
    picture = image(response)
    assert (picture.format, picture.size) == ("PNG", (320, 200))
    # The card is white in the middle, where the text goes, over the background colour.
    assert picture.getpixel((5, 5)) != picture.getpixel((160 // 4, 100))


def test_pillow_image_needs_a_prompt(client: httpx2.Client) -> None:
    response = client.post("pillow_image/run", json={})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_png_bytes(client: httpx2.Client) -> None:
    response = client.get("png_bytes/run", params={"width": 100, "height": 10})
    assert response.headers["content-type"] == "image/png"
    assert image(response).size == (100, 10)


def test_file_on_disk(client: httpx2.Client) -> None:
    logo = (EXAMPLES / "file_on_disk" / "assets" / "logo.png").read_bytes()
    response = client.post("file_on_disk/run", json={"name": "logo.png"})
    assert response.content == logo
    assert response.headers["content-disposition"] == 'inline; filename="logo.png"'
    assert "last-modified" in response.headers and "etag" in response.headers
    text = client.get("file_on_disk/run", params={"name": "readme.txt", "download": "true"})
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.headers["content-disposition"] == 'attachment; filename="readme.txt"'
    assert client.get("file_on_disk/run", params={"name": "../../etc/passwd"}).status_code == 422


def test_several_images(client: httpx2.Client) -> None:
    zipped = client.post("several_images/run", json={"count": 2, "size": 32})
    assert zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert archive.namelist() == ["image_0.png", "image_1.png"]
    listed = client.post("several_images/run", json={"count": 2}, headers={"accept": "application/json"}).json()
    assert listed["count"] == 2
    one = client.get("several_images/run", params={"count": 2, "index": 1}, headers={"accept": "image/webp"})
    assert image(one).format == "WEBP"


def test_byte_stream_is_a_valid_wav(client: httpx2.Client) -> None:
    response = client.post("byte_stream/run", json={"frequency": 440, "seconds": 0.5})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert "content-length" not in response.headers
    with wave.open(io.BytesIO(response.content)) as audio:
        assert (audio.getframerate(), audio.getnframes(), audio.getsampwidth()) == (16000, 8000, 2)
        samples = struct.unpack("<100h", audio.readframes(100))
    assert max(samples) > 1000


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_readme_curl_on_a_real_server(server: str) -> None:
    # What `make run` serves, called as the README shows: POST JSON, save a PNG, at / and mounted.
    with dualserve_run(EXAMPLES, server) as url:
        for base in (url, url + MOUNTED[server]):
            response = httpx2.post(
                f"{base}/pillow_image/run",
                headers={"Content-Type": "application/json"},
                content=b'{"prompt": "a cat", "width": 256, "height": 128}',
                timeout=20,
            )
            assert image(response).size == (256, 128)
            stream = httpx2.get(f"{base}/byte_stream/run", params={"seconds": 1}, timeout=20)
            assert stream.headers.get("transfer-encoding") == "chunked"
            assert stream.content[:4] == b"RIFF"


def test_pdf_report(client: httpx2.Client) -> None:
    response = client.post("pdf_report/run", json={"title": "Übersicht", "lines": ["one", "two"]})
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert (
        response.content.count(b"/Type /Page\n") + response.content.count(b"/Type /Page ") >= 2
        or b"/Count 2" in response.content
    )
    assert (
        response.headers["content-disposition"]
        == "attachment; filename=\"Ubersicht.pdf\"; filename*=UTF-8''%C3%9Cbersicht.pdf"
    )
    inline = client.get("pdf_report/run", params={"download": "false"})
    assert inline.headers["content-disposition"].startswith("inline;")


@pytest.mark.parametrize(("mode", "expected"), [("fit", (128, 64)), ("cover", (128, 128))])
def test_thumbnail_upload(client: httpx2.Client, mode: str, expected: tuple[int, int]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (800, 400), "olive").save(buffer, "JPEG")
    response = client.post(
        "thumbnail/run",
        files={"image": ("photo.jpg", buffer.getvalue(), "image/jpeg")},
        data={"size": "128", "mode": mode},
    )
    assert image(response).size == expected


def test_thumbnail_refuses_what_is_not_an_image(client: httpx2.Client) -> None:
    response = client.post("thumbnail/run", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "image"] and "notes.txt" in problem["msg"]


# Bounds, by annotation: what would cost the server unbounded memory or CPU is a 422 on every
# frontend, in the contract's shape, before the wrapper runs.


def assert_refused(response: httpx2.Response, *locations: list[str | int]) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.content[:200]
    assert response.headers["content-type"] == "application/json"
    detail: list[dict[str, Any]] = response.json()["detail"]
    assert [problem["loc"] for problem in detail] == list(locations)
    assert all(isinstance(problem["msg"], str) and isinstance(problem["type"], str) for problem in detail)
    return detail


def test_pillow_image_refuses_a_megabyte_prompt(client: httpx2.Client) -> None:
    # Pillow renders the whole prompt into one bitmap: this was a 500 (DecompressionBombError).
    response = client.post("pillow_image/run", json={"prompt": "x" * 1_000_000})
    [problem] = assert_refused(response, ["body", "prompt"])
    assert problem["type"] == "string_too_long"


def test_pillow_image_refuses_a_huge_card(client: httpx2.Client) -> None:
    response = client.get("pillow_image/run", params={"prompt": "x", "width": 100_000, "height": 100_000})
    detail = assert_refused(response, ["query", "width"], ["query", "height"])
    assert {problem["type"] for problem in detail} == {"less_than_equal"}
    assert_refused(client.post("pillow_image/run", json={"prompt": "x", "width": 15}), ["body", "width"])


def test_pillow_image_draws_at_its_bounds(client: httpx2.Client) -> None:
    response = client.post("pillow_image/run", json={"prompt": "x" * 2000, "width": 2048, "height": 16})
    assert image(response).size == (2048, 16)


@pytest.mark.parametrize(
    ("pipeline", "arguments", "field"),
    [
        ("png_bytes", {"width": 100_000}, "width"),
        ("png_bytes", {"height": 0}, "height"),
        ("several_images", {"count": 1000}, "count"),
        ("several_images", {"count": 0}, "count"),
        ("several_images", {"size": 100_000}, "size"),
        ("byte_stream", {"seconds": 86_400}, "seconds"),
        ("byte_stream", {"seconds": -1}, "seconds"),
        ("byte_stream", {"frequency": 1e9}, "frequency"),
        ("pdf_report", {"title": "x" * 1_000_000}, "title"),
        ("pdf_report", {"lines": ["page"] * 1000}, "lines"),
    ],
)
def test_sizes_counts_durations_and_texts_are_bounded(
    client: httpx2.Client, pipeline: str, arguments: dict[str, object], field: str
) -> None:
    assert_refused(client.post(f"{pipeline}/run", json=arguments), ["body", field])


@pytest.mark.parametrize("value", ["nan", "inf", "1e308"])
def test_byte_stream_refuses_endless_durations_from_the_query(client: httpx2.Client, value: str) -> None:
    assert_refused(client.get("byte_stream/run", params={"seconds": value}), ["query", "seconds"])


def test_pdf_report_bounds_each_line(client: httpx2.Client) -> None:
    response = client.post("pdf_report/run", json={"lines": ["fine", "x" * 1_000_000]})
    assert_refused(response, ["body", "lines", 1])


def test_pdf_report_takes_twenty_lines(client: httpx2.Client) -> None:
    response = client.get("pdf_report/run", params=[("lines", str(number)) for number in range(20)])
    assert response.status_code == 200
    assert b"/Count 20" in response.content


def test_thumbnail_bounds_the_size(client: httpx2.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "olive").save(buffer, "PNG")
    response = client.post(
        "thumbnail/run", files={"image": ("photo.png", buffer.getvalue(), "image/png")}, data={"size": "100000"}
    )
    assert_refused(response, ["body", "size"])
