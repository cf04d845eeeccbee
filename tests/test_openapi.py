"""The OpenAPI document: valid, the same on every frontend but for the server prefix, and exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from openapi_spec_validator import validate

from dualserve import Registry
from dualserve.serving.openapi import build_document
from tests.conftest import DISPATCHED
from tests.wrappers import make_wrappers

EXAMPLES = Path(__file__).parent.parent / "examples" / "pipeline_wrappers"
PREFIXES = {
    "fastapi": "/",
    "flask": "/",
    "flask-in-fastapi": "/flask",
    "fastapi-in-flask": "/fastapi",
    DISPATCHED: "/",
}


@pytest.mark.parametrize("source", ["tests", "examples"])
def test_document_is_valid_openapi_31(source: str) -> None:
    registry = Registry.from_wrappers(make_wrappers()) if source == "tests" else Registry.from_directory(EXAMPLES)
    document = build_document(registry, "/flask")
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_documents_are_equal_but_for_the_server(clients: dict[str, httpx2.Client]) -> None:
    documents = {name: client.get("openapi.json").json() for name, client in clients.items()}
    for name, document in documents.items():
        assert document.pop("servers") == [{"url": PREFIXES[name]}]
    reference = documents.pop("fastapi")
    assert all(document == reference for document in documents.values())


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(Registry.from_wrappers(make_wrappers()))


def content(document: dict[str, Any], name: str, method: str = "post") -> dict[str, Any]:
    result: dict[str, Any] = document["paths"][f"/{name}/run"][method]["responses"]["200"]["content"]
    return result


@pytest.mark.parametrize(
    ("name", "media_types"),
    [
        ("image", ["image/png", "image/jpeg", "image/webp", "application/json"]),
        ("jpeg_image", ["image/jpeg", "application/json"]),
        ("bytes", ["*/*"]),
        ("declared_bytes", ["application/x-custom"]),
        ("path", ["*/*"]),
        ("stream", ["application/octet-stream"]),
        ("text_stream", ["text/plain"]),
        ("async_stream", ["audio/wav"]),
        ("async_json", ["application/json"]),
        ("media", ["*/*"]),
    ],
)
def test_response_media_types_are_exact(document: dict[str, Any], name: str, media_types: list[str]) -> None:
    assert list(content(document, name)) == media_types
    for media_type in media_types:
        if media_type not in ("application/json", "text/plain"):
            assert content(document, name)[media_type]["schema"] == {"type": "string", "format": "binary"}


def test_several_images_offer_zip_images_and_json() -> None:
    registry = Registry.from_directory(Path(__file__).parent / "pipelines" / "several")
    document = build_document(registry)
    operation = document["paths"]["/several/run"]["get"]
    assert list(operation["responses"]["200"]["content"]) == [
        "application/zip",
        "image/png",
        "image/jpeg",
        "image/webp",
        "application/json",
    ]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"count", "format", "index"}


def test_json_results_carry_their_real_schema(document: dict[str, Any]) -> None:
    schema = content(document, "hayhooks_async")["application/json"]["schema"]
    assert schema == {"type": "string"}


def test_request_schema_comes_from_the_signature_and_docstring(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["bytesRequest"]
    assert schema["properties"]["width"] == {
        "default": 8,
        "description": "width in pixels.",
        "title": "Width",
        "type": "integer",
    }
    get = document["paths"]["/image/run"]["get"]
    assert [(p["name"], p["required"]) for p in get["parameters"]] == [
        ("prompt", True),
        ("width", False),
        ("height", False),
        ("format", False),
    ]


def test_uploads_are_multipart_and_post_only(document: dict[str, Any]) -> None:
    operations = document["paths"]["/upload/run"]
    assert list(operations) == ["post"]
    body = operations["post"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]
    schema = document["components"]["schemas"]["uploadRequest"]
    assert schema["properties"]["file"] == {"format": "binary", "title": "File", "type": "string"}


def test_errors_are_documented(document: dict[str, Any]) -> None:
    responses = document["paths"]["/image/run"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationError"}
    assert responses["default"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_docs_and_playground_are_served_from_local_assets(client: httpx2.Client) -> None:
    docs = client.get("docs")
    assert docs.headers["content-type"] == "text/html; charset=utf-8"
    assert "https://" not in docs.text and "http://" not in docs.text
    for asset in ("docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/docs.js", "ui/ui.js", "ui/ui.css"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "public, max-age=86400"
    assert "playground" in client.get("ui").text
    assert client.get("docs/..%2Fopenapi.py").status_code == 404
    assert client.get("docs/LICENSE").status_code == 404
    assert client.post("openapi.json").status_code == 405


def test_fastapi_app_openapi_is_the_same_document() -> None:
    from dualserve import fastapi_app

    registry = Registry.from_wrappers(make_wrappers())
    assert fastapi_app(registry).openapi() == build_document(registry)


def test_paths_are_the_route_tables(document: dict[str, Any]) -> None:
    # Derived from the core's table (issue 12): each documented path is answered by a route of it,
    # by the endpoint it documents, and every pipeline has its run path.
    from dualserve.core import routes

    endpoints = {path: routes.match(path)[0].endpoint for path in document["paths"]}  # type: ignore[index]
    assert endpoints.pop("/status") == "status"
    assert set(endpoints.values()) == {"run"}
    assert sorted(endpoints) == sorted(f"/{name}/run" for name in make_wrappers())
