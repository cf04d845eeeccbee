"""The contract's cases, run against every frontend with one set of assertions."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from PIL import Image

from tests.conftest import assert_alike
from tests.wrappers import DATA, png_bytes


@dataclass
class Expect:
    status: int
    content_type: str | None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    check: Callable[[httpx2.Response], None] | None = None


def is_png(size: tuple[int, int]) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG"
        assert image.size == size

    return check


def json_body(expected: Any) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        assert response.json() == expected

    return check


def validation(*errors: tuple[list[Any], str]) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        detail = response.json()["detail"]
        assert [(error["loc"], error["type"]) for error in detail] == list(errors)
        assert all(set(error) == {"loc", "msg", "type"} and error["msg"] for error in detail)

    return check


# Bytes and images a run made are not stored, so they offer no ranges (never spliced); a file
# the wrapper keeps on disk does.
MEDIA = {"accept-ranges": "none", "cache-control": "no-cache"}
FILE = {"accept-ranges": "bytes", "cache-control": "no-cache"}
JSON = "application/json"

CASES = [
    pytest.param(
        "GET", "/bytes/run?width=3&height=2", {}, Expect(200, "image/png", png_bytes(3, 2), MEDIA), id="bytes-sniffed"
    ),
    pytest.param(
        "POST", "/bytes/run", {"json": {"width": 3}}, Expect(200, "image/png", png_bytes(3, 8), MEDIA), id="bytes-post"
    ),
    pytest.param(
        "GET", "/declared_bytes/run", {}, Expect(200, "application/x-custom", b"custom payload"), id="bytes-declared"
    ),
    pytest.param(
        "GET",
        "/unknown_bytes/run",
        {},
        Expect(200, "application/octet-stream", b"\x00\x01 no magic here"),
        id="bytes-unknown",
    ),
    pytest.param(
        "POST",
        "/image/run",
        {"json": {"prompt": "a cat", "width": 20, "height": 10}},
        Expect(200, "image/png", headers=MEDIA, check=is_png((20, 10))),
        id="pil-image",
    ),
    pytest.param(
        "GET",
        "/image/run?prompt=a+cat&width=7",
        {},
        Expect(200, "image/png", check=is_png((7, 16))),
        id="pil-image-query",
    ),
    pytest.param(
        "GET",
        "/jpeg_image/run",
        {},
        Expect(200, "image/jpeg", check=lambda r: Image.open(io.BytesIO(r.content)).verify()),
        id="pil-rgba-as-declared-jpeg",
    ),
    pytest.param("GET", "/array/run", {}, Expect(200, "image/png", check=is_png((6, 4))), id="numpy-rgb"),
    pytest.param("GET", "/array/run?channels=1", {}, Expect(200, "image/png", check=is_png((6, 4))), id="numpy-gray"),
    pytest.param("GET", "/array/run?channels=4", {}, Expect(200, "image/png", check=is_png((6, 4))), id="numpy-rgba"),
    pytest.param(
        "GET",
        "/path/run",
        {},
        Expect(
            200,
            "image/png",
            (DATA / "sample.png").read_bytes(),
            {**FILE, "content-disposition": 'inline; filename="sample.png"', "content-length": "76"},
            check=lambda r: None if r.headers["etag"] and r.headers["last-modified"] else pytest.fail("validators"),
        ),
        id="path-png",
    ),
    pytest.param(
        "GET",
        "/path/run?name=notes.txt",
        {},
        Expect(200, "text/plain; charset=utf-8", b"plain notes\n"),
        id="path-text-by-extension",
    ),
    pytest.param(
        "GET",
        "/path/run?name=blob.weird",
        {},
        Expect(200, "application/pdf", b"%PDF-1.4 pretend pdf"),
        id="path-sniffed-when-extension-unknown",
    ),
    pytest.param(
        "GET",
        "/missing_path/run",
        {},
        Expect(404, JSON, b'{"detail":"File not found."}'),
        id="path-missing-is-json-404",
    ),
    pytest.param(
        "GET",
        "/stream/run",
        {},
        Expect(
            200,
            "application/octet-stream",
            b"chunk-0;chunk-1;chunk-2;",
            # No validator, and another run may send other bytes: not to be stored.
            headers={"cache-control": "no-store"},
            absent=("content-length", "etag"),
        ),
        id="stream-bytes",
    ),
    pytest.param("GET", "/stream/run?count=0", {}, Expect(200, "application/octet-stream", b""), id="stream-empty"),
    pytest.param(
        "GET",
        "/text_stream/run",
        {},
        Expect(200, "text/plain; charset=utf-8", b"line 0\nline 1\nline 2\n"),
        id="stream-text",
    ),
    pytest.param(
        "GET",
        "/async_stream/run",
        {},
        Expect(200, "audio/wav", b"\x00" * 4 + b"\x01" * 4 + b"\x02" * 4),
        id="stream-async-declared",
    ),
    pytest.param(
        "POST",
        "/async_json/run",
        {"json": {"shape": "circle", "options": {"scale": 2}, "tags": ["a", "b"]}},
        Expect(
            200,
            JSON,
            '{"shape":"circle","options":{"scale":2.0,"tags":[]},"tags":["a","b"],"text":"é"}'.encode(),
            absent=("etag", "accept-ranges", "cache-control"),
        ),
        id="json-async-pydantic",
    ),
    pytest.param(
        "GET",
        "/async_json/run?shape=square&tags=x&tags=y",
        {},
        Expect(200, JSON, check=json_body({"shape": "square", "options": None, "tags": ["x", "y"], "text": "é"})),
        id="json-query-list",
    ),
    pytest.param(
        "GET",
        "/hayhooks_async/run?question=why",
        {},
        Expect(200, JSON, b'"answer to why"'),
        id="run-api-async-name",
    ),
    pytest.param("GET", "/none/run", {}, Expect(200, JSON, b"null"), id="none-is-json-null"),
    pytest.param(
        "GET",
        "/bytesio/run",
        {},
        Expect(200, "image/png", png_bytes(5, 5), {"content-length": str(len(png_bytes(5, 5)))}),
        id="bytesio-sent-whole",
    ),
    pytest.param(
        "GET",
        "/media/run",
        {},
        Expect(
            200,
            "image/png",
            png_bytes(),
            {
                "content-disposition": "inline; filename=\"Vogel.png\"; filename*=UTF-8''V%C3%B6gel.png",
                "x-generated-by": "dualserve-tests",
                "cache-control": "no-cache",
            },
        ),
        id="media-non-ascii-filename",
    ),
    pytest.param(
        "GET",
        "/media/run?name=report+1.png&attachment=true&max_age=60",
        {},
        Expect(
            200,
            "image/png",
            png_bytes(),
            {"content-disposition": 'attachment; filename="report 1.png"', "cache-control": "public, max-age=60"},
        ),
        id="media-attachment-max-age",
    ),
    pytest.param("GET", "/status_media/run", {}, Expect(202, JSON, b'{"queued": true}'), id="media-status-code"),
    pytest.param(
        "HEAD",
        "/media/run",
        {},
        Expect(200, "image/png", b"", {"content-length": str(len(png_bytes())), **MEDIA}),
        id="head-same-headers-no-body",
    ),
    pytest.param(
        "HEAD",
        "/path/run",
        {},
        Expect(200, "image/png", b"", {"content-length": "76", "accept-ranges": "bytes"}),
        id="head-file",
    ),
    pytest.param("HEAD", "/stream/run", {}, Expect(200, "application/octet-stream", b""), id="head-stream"),
    pytest.param(
        "POST",
        "/upload/run",
        {"files": {"file": ("in.bin", b"12345", "application/x-test")}, "data": {"label": "L"}},
        Expect(
            200,
            JSON,
            check=json_body({"filename": "in.bin", "content_type": "application/x-test", "size": 5, "label": "L"}),
        ),
        id="upload-multipart",
    ),
    pytest.param(
        "POST",
        "/upload/run",
        {"data": {"label": "L"}},
        Expect(422, JSON, check=validation((["body", "file"], "missing"))),
        id="upload-missing-422",
    ),
    pytest.param(
        "POST",
        "/image/run",
        {"json": {"width": "wide"}},
        Expect(422, JSON, check=validation((["body", "prompt"], "missing"), (["body", "width"], "int_parsing"))),
        id="validation-422",
    ),
    pytest.param(
        "GET",
        "/image/run?width=wide",
        {},
        Expect(422, JSON, check=validation((["query", "prompt"], "missing"), (["query", "width"], "int_parsing"))),
        id="validation-query-422",
    ),
    pytest.param(
        "POST",
        "/image/run",
        {"content": b'{"prompt": ', "headers": {"content-type": "application/json"}},
        Expect(422, JSON, check=validation((["body"], "json_invalid"))),
        id="malformed-json-422",
    ),
    pytest.param(
        "POST",
        "/image/run",
        {"json": ["not", "an", "object"]},
        Expect(422, JSON, check=validation((["body"], "model_type"))),
        id="json-not-object-422",
    ),
    pytest.param(
        "POST",
        "/async_json/run",
        {"json": {"shape": "triangle"}},
        Expect(422, JSON, check=validation((["body", "shape"], "enum"))),
        id="enum-422",
    ),
    pytest.param(
        "GET",
        "/http_error/run?status=409",
        {},
        Expect(409, JSON, b'{"detail":{"reason":"teapot","status":409}}'),
        id="http-error",
    ),
    pytest.param(
        "GET",
        "/failing/run",
        {},
        Expect(500, JSON, b'{"detail":"Pipeline execution failed"}'),
        id="exception-500-no-traceback",
    ),
    pytest.param(
        "GET",
        "/failing_stream/run",
        {},
        Expect(500, JSON, b'{"detail":"Pipeline execution failed"}'),
        id="stream-fails-before-first-chunk",
    ),
    pytest.param(
        "GET", "/nope/run", {}, Expect(404, JSON, b'{"detail":"Pipeline \'nope\' not found."}'), id="unknown-pipeline"
    ),
    pytest.param("GET", "/no/such/route", {}, Expect(404, JSON, b'{"detail":"Not Found"}'), id="unknown-route"),
    pytest.param("GET", "/status/", {}, Expect(404, JSON, b'{"detail":"Not Found"}'), id="no-slash-redirect"),
    pytest.param("GET", "/static/ui.js", {}, Expect(404, JSON, b'{"detail":"Not Found"}'), id="no-static-folder"),
    pytest.param(
        "DELETE",
        "/image/run",
        {},
        Expect(405, JSON, b'{"detail":"Method Not Allowed"}', {"allow": "GET, HEAD, POST"}),
        id="method-not-allowed-405",
    ),
    pytest.param(
        "POST",
        "/status",
        {},
        Expect(405, JSON, b'{"detail":"Method Not Allowed"}', {"allow": "GET, HEAD"}),
        id="status-405",
    ),
    # Jobs (section 6): what is answered without a job's state (the rest: tests/test_jobs.py).
    pytest.param("GET", "/jobs/unknown", {}, Expect(404, JSON), id="job-unknown"),
    pytest.param("HEAD", "/jobs/unknown", {}, Expect(404, JSON, b""), id="job-unknown-head"),
    pytest.param("DELETE", "/jobs/unknown", {}, Expect(404, JSON), id="job-delete-unknown"),
    pytest.param("PUT", "/jobs/unknown", {}, Expect(405, JSON, headers={"allow": "GET, HEAD, DELETE"}), id="job-put"),
    pytest.param("GET", "/jobs/unknown/result", {}, Expect(404, JSON), id="job-result-unknown"),
    pytest.param(
        "POST", "/jobs/unknown/result", {}, Expect(405, JSON, headers={"allow": "GET, HEAD"}), id="job-result-post"
    ),
    pytest.param("GET", "/jobs/unknown/events", {}, Expect(404, JSON), id="job-events-unknown"),
    pytest.param("POST", "/nope/jobs", {"json": {}}, Expect(404, JSON), id="job-submit-unknown-pipeline"),
    pytest.param(
        "POST",
        "/bytes/jobs",
        {"json": {"width": "wide"}},
        Expect(422, JSON, check=validation((["body", "width"], "int_parsing"))),
        id="job-submit-invalid",
    ),
]


def _request(client: httpx2.Client, method: str, url: str, kwargs: dict[str, Any]) -> httpx2.Response:
    return client.request(method, url.lstrip("/"), **kwargs)


@pytest.mark.parametrize(("method", "url", "kwargs", "expect"), CASES)
def test_case(client: httpx2.Client, method: str, url: str, kwargs: dict[str, Any], expect: Expect) -> None:
    response = _request(client, method, url, kwargs)
    assert response.status_code == expect.status, response.content
    assert response.headers.get("content-type") == expect.content_type
    if expect.body is not None:
        assert response.content == expect.body
    for name, value in expect.headers.items():
        assert response.headers.get(name) == value, name
    for name in expect.absent:
        assert name not in response.headers
    if response.status_code != 204 and "content-length" in response.headers and method != "HEAD":
        assert int(response.headers["content-length"]) == len(response.content)
    if expect.check is not None:
        expect.check(response)


@pytest.mark.parametrize(("method", "url", "kwargs", "expect"), CASES)
def test_every_frontend_answers_alike(
    clients: dict[str, httpx2.Client], method: str, url: str, kwargs: dict[str, Any], expect: Expect
) -> None:
    assert_alike(clients, lambda c: _request(c, method, url, kwargs))


def test_status_lists_pipelines(client: httpx2.Client) -> None:
    body = client.get("status").json()
    assert body["status"] == "ok"
    assert "image" in body["pipelines"] and "stream" in body["pipelines"]
    assert body["failed"] == {}


def test_head_status(client: httpx2.Client) -> None:
    response = client.head("status")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(client.get("status").content)


def test_json_bytes_are_compact_utf8(client: httpx2.Client) -> None:
    response = client.post("async_json/run", json={"shape": "square"})
    assert "é" in response.content.decode("utf-8")
    assert json.loads(response.content)["text"] == "é"
    assert b": " not in response.content
