"""The OpenAPI document: valid, the same on every frontend but for the server prefix, and exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from dualserve import Registry
from dualserve.serving.openapi import build_document
from dualserve.serving.service import Service
from tests.conftest import DISPATCHED, FRONTENDS, frontend_client
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
    # Derived from the core's table (issues 12 and 15): each documented path is answered by a route
    # of it, by the endpoint it documents; every pipeline has its run and jobs paths, and the job
    # routes shared by every pipeline are documented once.
    from dualserve.core import routes

    endpoints = {path: routes.match(path)[0].endpoint for path in document["paths"]}  # type: ignore[index]
    names = make_wrappers()
    assert endpoints == {
        "/status": "status",
        "/jobs/{job}": "job",
        "/jobs/{job}/result": "job_result",
        "/jobs/{job}/events": "job_events",
        **{f"/{name}/run": "run" for name in names},
        **{f"/{name}/jobs": "submit" for name in names},
    }
    # Each pipeline's paths together, /run first, so Swagger UI lists them so under its tag.
    pipeline_paths = [path for path, endpoint in endpoints.items() if endpoint in ("run", "submit")]
    assert pipeline_paths == [f"/{name}/{end}" for name in sorted(names) for end in ("run", "jobs")]
    assert [tag["name"] for tag in document["tags"]] == [*sorted(names), "jobs"]


# --- Jobs (issue 15) -------------------------------------------------------------------------------


def responses(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    result: dict[str, Any] = document["paths"][path][method]["responses"]
    return result


def parameters(operation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(parameter["in"], parameter["name"]): parameter for parameter in operation.get("parameters", ())}


def schema_of(document: dict[str, Any], response: dict[str, Any]) -> Any:
    return response["content"]["application/json"]["schema"]


JOB = {"$ref": "#/components/schemas/Job"}
ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize("name", sorted(make_wrappers()))
def test_every_pipeline_has_its_jobs_operation(document: dict[str, Any], name: str) -> None:
    operations = document["paths"][f"/{name}/jobs"]
    assert list(operations) == ["post"]
    submit, run = operations["post"], document["paths"][f"/{name}/run"]["post"]
    assert submit["operationId"] == f"{name}_submit"
    assert submit["tags"] == [name]
    # The body /run takes, and its query controls (format, index), kept with the job.
    assert submit["requestBody"] == run["requestBody"]
    controls = {key for key in parameters(run) if key[0] == "query"}
    assert controls <= set(parameters(submit))
    headers = {key[1] for key in parameters(submit) if key[0] == "header"}
    assert headers == {"Prefer", "Idempotency-Key"}
    assert "wait=N" in parameters(submit)[("header", "Prefer")]["description"]
    found = responses(document, f"/{name}/jobs", "post")
    assert sorted(found) == ["201", "202", "404", "422", "default"]
    assert schema_of(document, found["202"]) == schema_of(document, found["201"]) == JOB
    assert set(found["202"]["headers"]) == {"Location", "Retry-After"}
    assert set(found["201"]["headers"]) == {"Location"}
    assert schema_of(document, found["404"]) == schema_of(document, found["default"]) == ERROR
    # Invalid arguments as from /run, or an Idempotency-Key used with another body.
    assert schema_of(document, found["422"]) == {"anyOf": [{"$ref": "#/components/schemas/ValidationError"}, ERROR]}


def test_run_documents_prefer_respond_async(document: dict[str, Any]) -> None:
    post = document["paths"]["/image/run"]["post"]
    assert "`Prefer: respond-async`" in post["description"]
    assert "POST /image/jobs" in post["description"]
    assert ("header", "Prefer") in parameters(post)
    assert schema_of(document, post["responses"]["202"]) == JOB
    assert set(post["responses"]["202"]["headers"]) == {"Location", "Retry-After", "Preference-Applied"}
    assert schema_of(document, post["responses"]["201"]) == JOB  # with wait=N too, ended in time
    assert set(post["responses"]["201"]["headers"]) == {"Location", "Preference-Applied"}
    # A GET never becomes a job: nothing of it there.
    get = document["paths"]["/image/run"]["get"]
    assert "202" not in get["responses"] and ("header", "Prefer") not in parameters(get)
    assert "respond-async" not in get["description"]


def test_the_shared_job_operations(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path in ("/jobs/{job}", "/jobs/{job}/result", "/jobs/{job}/events"):
        assert parameters(paths[path]) == {
            ("path", "job"): {
                "name": "job",
                "in": "path",
                "required": True,
                "description": "The job's id (its `id`).",
                "schema": {"type": "string"},
            }
        }
    assert [key for key in paths["/jobs/{job}"] if key != "parameters"] == ["get", "delete"]
    for method in ("get", "delete"):
        found = responses(document, "/jobs/{job}", method)
        assert sorted(found) == ["200", "404"]
        assert schema_of(document, found["200"]) == JOB
        assert schema_of(document, found["404"]) == ERROR
        assert paths["/jobs/{job}"][method]["tags"] == ["jobs"]

    result = responses(document, "/jobs/{job}/result", "get")
    assert sorted(result) == ["200", "206", "304", "404", "409", "410", "default"]
    # Whatever the pipeline: any media type, as binary.
    assert result["200"]["content"] == {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    assert set(result["409"]["headers"]) == {"Retry-After"}
    for status in ("404", "409", "410", "default"):
        assert schema_of(document, result[status]) == ERROR

    events = paths["/jobs/{job}/events"]["get"]
    assert sorted(events["responses"]) == ["200", "404"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert set(parameters(events)) == {("header", "Last-Event-ID")}
    for word in ("id: ", "event: ", "data: ", "Last-Event-ID", "JobEvent"):
        assert word in events["description"]


def test_the_job_schema_is_the_job_json(document: dict[str, Any]) -> None:
    from tests.test_jobs import JOB_KEYS

    schema = document["components"]["schemas"]["Job"]
    assert set(schema["properties"]) == set(schema["required"]) == JOB_KEYS
    assert schema["additionalProperties"] is False
    assert schema["properties"]["status"]["enum"] == ["queued", "running", "succeeded", "failed", "canceled"]
    assert schema["properties"]["progress"]["type"] == ["number", "null"]
    event = document["components"]["schemas"]["JobEvent"]
    assert set(event["properties"]) == set(event["required"]) == {"id", "status", "progress", "message"}


@pytest.fixture
def jobs_service(tmp_path: Path) -> Iterator[Service]:
    from tests.test_jobs import Endless, Steps, Teapot

    wrappers = {"steps": Steps(), "endless": Endless(), "teapot": Teapot()}
    service = Service(Registry.from_wrappers(wrappers), state_dir=tmp_path / "state")
    yield service
    if service._jobs is not None:
        service._jobs.stop()


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_job_answers_are_what_the_document_says(jobs_service: Service, frontend: str) -> None:
    """Real answers of each job route, checked against the schema the same frontend documents."""
    from tests.test_jobs import ended, parse_events

    with frontend_client(frontend, jobs_service) as client:
        document = client.get("openapi.json").json()
        validate(document)

        def check(response: httpx2.Response, path: str, method: str = "get") -> dict[str, Any]:
            found = responses(document, path, method)
            documented = found.get(str(response.status_code), found.get("default"))
            assert documented is not None, (path, method, response.status_code)
            for header in documented.get("headers", {}):
                assert header.lower() in response.headers, (path, header)
            body: dict[str, Any] = response.json()
            against(document, schema_of(document, documented)).validate(body)
            return body

        submitted = client.post("/steps/jobs", json={"steps": 6})
        job = check(submitted, "/steps/jobs", "post")
        seen = [check(client.get(f"/jobs/{job['id']}"), "/jobs/{job}")]
        while seen[-1]["status"] not in ("succeeded", "failed", "canceled"):
            seen.append(check(client.get(f"/jobs/{job['id']}"), "/jobs/{job}"))
        assert {"queued", "running", "succeeded"} >= {entry["status"] for entry in seen}
        assert seen[-1]["status"] == "succeeded" and seen[-1]["result_url"]
        for event in parse_events(client.get(f"/jobs/{job['id']}/events").text):
            against(document, {"$ref": "#/components/schemas/JobEvent"}).validate(event["data"])
        assert client.get(f"/jobs/{job['id']}/result").json() == "6 steps"

        waited = client.post("/steps/jobs", json={"steps": 1}, headers={"prefer": "wait=10"})
        assert waited.status_code == 201
        check(waited, "/steps/jobs", "post")
        asynchronous = client.post("/steps/run", json={"steps": 1}, headers={"prefer": "respond-async"})
        assert asynchronous.status_code == 202
        check(asynchronous, "/steps/run", "post")
        held = client.post("/steps/run", json={"steps": 1}, headers={"prefer": "respond-async, wait=10"})
        assert held.status_code == 201
        check(held, "/steps/run", "post")

        failed = ended(client, check(client.post("/teapot/jobs", json={}), "/teapot/jobs", "post")["id"])
        against(document, JOB).validate(failed)
        assert failed["error"] == {"status": 418, "detail": "I'm a teapot"}
        failed_result = client.get(f"/jobs/{failed['id']}/result")
        assert failed_result.status_code == 418
        check(failed_result, "/jobs/{job}/result")  # documented as the default: an Error

        running = check(client.post("/endless/jobs", json={}), "/endless/jobs", "post")
        early = client.get(f"/jobs/{running['id']}/result")
        assert early.status_code == 409  # queued or running
        check(early, "/jobs/{job}/result")
        canceled = check(client.delete(f"/jobs/{running['id']}"), "/jobs/{job}", "delete")
        assert canceled["status"] == "canceled"
        for path in ("/jobs/{job}", "/jobs/{job}/result", "/jobs/{job}/events"):
            gone = client.get(path.replace("{job}", running["id"]))
            assert gone.status_code == 404
            check(gone, path)
        key = {"idempotency-key": "k1"}
        client.post("/steps/jobs", json={"steps": 1}, headers=key)
        mismatch = client.post("/steps/jobs", json={"steps": 2}, headers=key)
        assert mismatch.status_code == 422
        check(mismatch, "/steps/jobs", "post")
        invalid = client.post("/steps/jobs", json={"steps": "many"})
        assert invalid.status_code == 422
        check(invalid, "/steps/jobs", "post")


def against(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema``, whose references resolve in the document's components; formats
    (date-time) are checked."""
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
