"""Hayhooks wrappers (FastAPI responses) and Flask-style wrappers (Response, send_file), unchanged,
on every frontend: the core reads the response objects, so both frontends answer alike."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from dualserve.serving.service import Service
from tests.conftest import assert_alike
from tests.test_real_servers import eventually
from tests.wrappers import DATA, png_bytes

RANGE_DATA = (DATA / "range.bin").read_bytes()


def test_hayhooks_image_generation_file_response(client: httpx2.Client) -> None:
    response = client.post("hh_image_file/run", json={"prompt": "a cat", "width": 20, "height": 10})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="generated_image.png"'
    assert Image.open(io.BytesIO(response.content)).size == (20, 10)
    assert "etag" in response.headers and "last-modified" in response.headers


def test_hayhooks_background_task_runs_on_every_frontend(client: httpx2.Client, tmp_path: Path) -> None:
    response = client.get("hh_clean_file/run", params={"directory": str(tmp_path)})
    assert response.content == png_bytes(3, 3)
    assert list(tmp_path.iterdir()) == []


def test_hayhooks_bytes_response(client: httpx2.Client) -> None:
    response = client.post("hh_bytes/run", json={"prompt": "x"})
    assert response.content == png_bytes(6, 6)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'inline; filename="image.png"'
    assert response.headers["content-length"] == str(len(png_bytes(6, 6)))


def test_hayhooks_streaming_response(client: httpx2.Client) -> None:
    response = client.post("hh_audio/run", json={"query": "x"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == 'attachment; filename="audio.wav"'
    assert response.content.startswith(b"RIFF") and len(response.content) == 20012


@pytest.mark.parametrize(("path", "size"), [("hh_audio/run?query=x", 20012), ("fl_bytesio/run", 9000)])
def test_a_streaming_response_over_a_bytesio_is_sent_whole(client: httpx2.Client, path: str, size: int) -> None:
    # Iterated, a BytesIO is one chunk per line and no length (seed 003's pitfall): sent whole here.
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(size) and len(response.content) == size
    # Bytes the run made are not stored: a Range of them is the whole body (never spliced).
    assert response.headers["accept-ranges"] == "none" and response.headers["etag"]
    partial = client.get(path, headers={"range": "bytes=0-9"})
    assert (partial.status_code, partial.content) == (200, response.content)
    assert client.get(path, headers={"if-none-match": response.headers["etag"]}).status_code == 304


def _created(service: Service, name: str) -> list[str]:
    created: list[str] = service.registry.pipelines[name].wrapper.created
    return created


@pytest.mark.parametrize(
    ("method", "headers"),
    [("POST", {}), ("HEAD", {}), ("GET", {"range": "bytes=0-9"})],
    ids=["post", "head", "range"],
)
def test_a_temp_file_the_run_created_is_deleted_after_the_answer(
    client: httpx2.Client, service: Service, method: str, headers: dict[str, str]
) -> None:
    # Hayhooks' image_generation: NamedTemporaryFile(delete=False) + FileResponse, once per call.
    before = len(_created(service, "hh_image_file"))
    arguments: dict[str, Any] = {"json": {"prompt": "a cat"}} if method == "POST" else {"params": {"prompt": "a"}}
    response = client.request(method, "hh_image_file/run", headers=headers, **arguments)
    # The run's own temp file is not stored: its Range is ignored.
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "none"
    made = _created(service, "hh_image_file")[before:]
    assert len(made) == 1 and made[0].startswith(tempfile.gettempdir())
    assert eventually(lambda: not os.path.exists(made[0])), made


def test_a_file_that_was_there_before_the_run_is_never_deleted(client: httpx2.Client) -> None:
    with tempfile.NamedTemporaryFile(delete=False) as existing:
        existing.write(b"mine")
    try:
        response = client.get("hh_existing_file/run", params={"path": existing.name})
        assert response.content == b"mine"
        assert os.path.exists(existing.name)
    finally:
        os.unlink(existing.name)


def test_a_wrapper_may_keep_its_temp_files(client: httpx2.Client, service: Service) -> None:
    response = client.post("hh_kept_file/run", json={"prompt": "a cat"})
    assert response.status_code == 200
    made = _created(service, "hh_kept_file")[-1]
    assert os.path.exists(made)
    os.unlink(made)


def test_flask_mimetype_response(client: httpx2.Client) -> None:
    response = client.get("fl_mimetype/run")
    assert (response.headers["content-type"], response.content) == ("image/png", png_bytes(7, 7))


@pytest.mark.parametrize("download", [False, True])
def test_flask_send_file(client: httpx2.Client, download: bool) -> None:
    response = client.get("fl_send_file/run", params={"download": str(download).lower()})
    assert response.status_code == 200
    assert response.content == RANGE_DATA
    disposition = "attachment" if download else "inline"
    assert response.headers["content-disposition"] == f"{disposition}; filename=data.bin"
    # A file that was there before the run is stored: its Range is answered.
    assert response.headers["accept-ranges"] == "bytes"
    ranged = client.get("fl_send_file/run", headers={"range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, RANGE_DATA[:10])


def test_flask_generator_response(client: httpx2.Client) -> None:
    response = client.get("fl_generator/run")
    assert (response.headers["content-type"], response.content) == ("text/csv; charset=utf-8", b"one,two")


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("POST", "hh_bytes/run", {"json": {"prompt": "x"}}),
        ("POST", "hh_audio/run", {"json": {"query": "x"}}),
        ("GET", "fl_mimetype/run", {}),
        ("GET", "fl_send_file/run", {}),
        ("GET", "fl_send_file/run", {"headers": {"range": "bytes=-5"}}),
        ("HEAD", "fl_send_file/run", {}),
        ("GET", "fl_generator/run", {}),
    ],
)
def test_identical_everywhere(clients: dict[str, httpx2.Client], method: str, url: str, kwargs: dict[str, Any]) -> None:
    assert_alike(clients, lambda c: c.request(method, url, **kwargs))
