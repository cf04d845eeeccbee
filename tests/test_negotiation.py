"""Content negotiation for images and several items, the same on every frontend."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from PIL import Image

from tests.conftest import assert_alike
from tests.wrappers import png_bytes

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"


def image_format(expected: str, size: tuple[int, int] | None = None) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        image = Image.open(io.BytesIO(response.content))
        assert image.format == expected
        if size is not None:
            assert image.size == size

    return check


def json_image(media_type: str, pil_format: str) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        document = response.json()
        assert set(document) == {"media_type", "data"}
        assert document["media_type"] == media_type
        assert Image.open(io.BytesIO(base64.b64decode(document["data"]))).format == pil_format

    return check


def zip_entries(expected: list[str]) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert archive.namelist() == expected
            assert Image.open(io.BytesIO(archive.read("image_0.png"))).size == (4, 3)
            assert archive.read("image_1.png") == png_bytes(2, 2)
            assert archive.read("notes.txt") == b"plain words"
        assert response.headers["content-disposition"] == 'attachment; filename="several.zip"'

    return check


def several_json(response: httpx2.Response) -> None:
    document = response.json()
    assert document["count"] == 3
    assert [(item["index"], item["media_type"]) for item in document["items"]] == [
        (0, "image/png"),
        (1, "image/png"),
        (2, "text/plain; charset=utf-8"),
    ]
    assert base64.b64decode(document["items"][2]["data"]) == b"plain words"


def detail(expected: str) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        assert expected in str(response.json()["detail"])

    return check


CASES = [
    pytest.param("image/run?prompt=x", None, 200, "image/png", image_format("PNG"), id="no-accept-png"),
    pytest.param("image/run?prompt=x", "*/*", 200, "image/png", image_format("PNG"), id="any-png"),
    pytest.param("image/run?prompt=x", "image/*", 200, "image/png", image_format("PNG"), id="image-star-png"),
    pytest.param("image/run?prompt=x", "image/webp", 200, "image/webp", image_format("WEBP"), id="webp"),
    pytest.param(
        "image/run?prompt=x",
        "image/jpeg;q=0.5, image/webp;q=0.9",
        200,
        "image/webp",
        image_format("WEBP"),
        id="q-values",
    ),
    pytest.param("image/run?prompt=x", BROWSER, 200, "image/webp", image_format("WEBP"), id="browser-accept"),
    pytest.param("image/run?prompt=x&format=jpeg", None, 200, "image/jpeg", image_format("JPEG"), id="query-format"),
    pytest.param(
        # The explicit choice wins over an Accept that does not name it (issue 13; was a 406).
        "image/run?prompt=x&format=jpeg",
        "image/webp",
        200,
        "image/jpeg",
        image_format("JPEG"),
        id="query-format-wins-over-accept",
    ),
    pytest.param(
        "image/run?prompt=x&format=gif", None, 422, "application/json", detail("format"), id="query-format-bad"
    ),
    pytest.param(
        "image/run?prompt=x", "application/json", 200, "application/json", json_image("image/png", "PNG"), id="json"
    ),
    pytest.param(
        "image/run?prompt=x&format=webp",
        "application/json",
        200,
        "application/json",
        json_image("image/webp", "WEBP"),
        id="json-webp",
    ),
    pytest.param(
        "image/run?prompt=x",
        "text/html",
        406,
        "application/json",
        detail("Offered: image/png, image/jpeg, image/webp, application/json"),
        id="not-acceptable",
    ),
    pytest.param("jpeg_image/run", None, 200, "image/jpeg", image_format("JPEG"), id="produces-jpeg"),
    pytest.param("jpeg_image/run", "image/png", 406, "application/json", detail("image/jpeg"), id="produces-fixes"),
    pytest.param("webp_media/run", "image/*", 200, "image/webp", image_format("WEBP"), id="media-format"),
    pytest.param(
        "webp_media/run", "image/png", 200, "image/webp", image_format("WEBP"), id="media-format-wins-over-accept"
    ),
    pytest.param(
        "webp_media/run", "application/json", 200, "application/json", json_image("image/webp", "WEBP"), id="media-json"
    ),
    pytest.param("own_format/run?format=abcd", None, 200, "image/png", image_format("PNG", (4, 1)), id="own-param"),
    pytest.param("array/run", "image/jpeg", 200, "image/jpeg", image_format("JPEG", (6, 4)), id="numpy-jpeg"),
    pytest.param(
        "several/run",
        None,
        200,
        "application/zip",
        zip_entries(["image_0.png", "image_1.png", "notes.txt"]),
        id="several-zip-default",
    ),
    pytest.param("several/run", "application/json", 200, "application/json", several_json, id="several-json"),
    pytest.param("several/run?index=0", None, 200, "image/png", image_format("PNG", (4, 3)), id="index-image"),
    pytest.param("several/run?index=0", "image/webp", 200, "image/webp", image_format("WEBP"), id="index-webp"),
    pytest.param("several/run?index=2", None, 200, "text/plain; charset=utf-8", lambda r: None, id="index-bytes"),
    pytest.param("several/run?index=3", None, 404, "application/json", detail("Item 3 does not exist"), id="index-404"),
    pytest.param("several/run?index=x", None, 422, "application/json", detail("index"), id="index-422"),
    pytest.param(
        "several/run", "image/png", 406, "application/json", detail("application/zip, application/json"), id="many-406"
    ),
]


def fetch(client: httpx2.Client, url: str, accept: str | None) -> httpx2.Response:
    headers = {"accept": accept} if accept is not None else {}
    return client.get(url, headers=headers)


@pytest.mark.parametrize(("url", "accept", "status", "content_type", "check"), CASES)
def test_negotiation(
    client: httpx2.Client, url: str, accept: str | None, status: int, content_type: str, check: Callable[..., Any]
) -> None:
    response = fetch(client, url, accept)
    assert response.status_code == status, response.content
    assert response.headers["content-type"] == content_type
    if status == 200:
        assert response.headers["vary"] == "Accept"
    check(response)


@pytest.mark.parametrize(("url", "accept", "status", "content_type", "check"), CASES)
def test_negotiation_identical_everywhere(
    clients: dict[str, httpx2.Client], url: str, accept: str | None, status: int, content_type: str, check: Any
) -> None:
    assert_alike(clients, lambda c: fetch(c, url, accept))


def test_negotiated_answers_keep_http_rules(client: httpx2.Client) -> None:
    webp = client.get("image/run?prompt=x", headers={"accept": "image/webp"})
    again = client.get("image/run?prompt=x", headers={"accept": "image/webp", "if-none-match": webp.headers["etag"]})
    assert again.status_code == 304
    png = client.get("image/run?prompt=x")
    assert png.headers["etag"] != webp.headers["etag"]
    # An image encoded per request is not stored: a Range of it is the whole body (never spliced).
    assert png.headers["accept-ranges"] == "none"
    partial = client.get("image/run?prompt=x", headers={"range": "bytes=0-7"})
    assert (partial.status_code, partial.content) == (200, png.content)


def test_zip_entries_have_a_fixed_time_so_the_same_items_give_the_same_bytes(client: httpx2.Client) -> None:
    first = client.get("several/run").content
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o644}
