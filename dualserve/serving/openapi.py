"""One OpenAPI 3.1 document for every frontend, built from the wrappers. No web framework.

Request schemas come from ``run_api``'s signature (descriptions from its docstring), an upload
parameter makes the body ``multipart/form-data``, and the 200 response lists exactly the media
types the wrapper can produce: what ``@produces`` declares, else what the return annotation says
(bytes and files as ``format: binary``, images as PNG, JPEG and WebP plus their base64 JSON,
several images as a zip or JSON, JSON results with their real schema). Each pipeline's
``POST /{name}/jobs`` takes the same body as its ``/run``; the shared job routes answer the
``Job`` schema, whatever the pipeline. Every path comes from the core's route table. The frontends
differ only in ``servers``, which names the prefix each is mounted at.
"""

from __future__ import annotations

import collections.abc
import copy
import inspect
import io
import os
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from ..__version__ import __version__
from ..core.returns import IMAGE_TYPES
from ..core.routes import ROUTES, Route
from ..media import Media
from .jobs import MAX_WAIT
from .pipelines import Pipeline, Registry

__all__ = ["build_document"]

BINARY = {"type": "string", "format": "binary"}
_ERROR = {"$ref": "#/components/schemas/Error"}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"detail": {"description": "What went wrong: a message, or structured details."}},
        "required": ["detail"],
    },
    "ValidationError": {
        "type": "object",
        "properties": {
            "detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                    "required": ["loc", "msg", "type"],
                },
            }
        },
        "required": ["detail"],
    },
    "EncodedMedia": {
        "type": "object",
        "description": "A media result in base64, for clients that want JSON.",
        "properties": {"media_type": {"type": "string"}, "data": {"type": "string", "contentEncoding": "base64"}},
        "required": ["media_type", "data"],
    },
    "EncodedItems": {
        "type": "object",
        "description": "Several media results in base64.",
        "properties": {
            "count": {"type": "integer"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "media_type": {"type": "string"},
                        "data": {"type": "string", "contentEncoding": "base64"},
                    },
                    "required": ["index", "media_type", "data"],
                },
            },
        },
        "required": ["count", "items"],
    },
    "Status": {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "pipelines": {"type": "array", "items": {"type": "string"}},
            "failed": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["status", "pipelines", "failed"],
    },
}
# The job JSON (docs/contract.md section 6), as Jobs.document() writes it.
_JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
_JOB_STATUS = {
    "type": "string",
    "enum": list(_JOB_STATUSES),
    "description": "queued, then running, then one of the final three: succeeded, failed or canceled.",
}
_PROGRESS = {
    "type": ["number", "null"],
    "minimum": 0,
    "maximum": 1,
    "description": "How far the run is, 0 to 1, as the pipeline reports it with dualserve.progress(); "
    "null when it reports none; 1 once succeeded.",
}
_MESSAGE = {"type": ["string", "null"], "description": "What the pipeline last said with its progress."}
_SCHEMAS["Job"] = {
    "type": "object",
    "description": "A run of a pipeline as a resource, kept until expires_at.",
    "properties": {
        "id": {"type": "string", "description": "The job's id, in its URL /jobs/{id}."},
        "pipeline": {"type": "string", "description": "The pipeline that runs it."},
        "status": _JOB_STATUS,
        "progress": _PROGRESS,
        "message": _MESSAGE,
        "created_at": {"type": "string", "format": "date-time", "description": "When it was submitted (RFC 3339)."},
        "started_at": {"type": ["string", "null"], "format": "date-time", "description": "When it started running."},
        "ended_at": {"type": ["string", "null"], "format": "date-time", "description": "When it ended."},
        "expires_at": {
            "type": "string",
            "format": "date-time",
            "description": "When the job and its result are dropped: 404 from then on.",
        },
        "result_url": {
            "type": ["string", "null"],
            "format": "uri-reference",
            "description": "Where its result is served, once it succeeded.",
        },
        "error": {
            "type": ["object", "null"],
            "description": "Why it failed: the status and detail its result answers.",
            "properties": {
                "status": {"type": "integer", "minimum": 100, "maximum": 599},
                "detail": {"description": "What went wrong: a message, or structured details."},
            },
            "required": ["status", "detail"],
        },
    },
    "required": [
        "id",
        "pipeline",
        "status",
        "progress",
        "message",
        "created_at",
        "started_at",
        "ended_at",
        "expires_at",
        "result_url",
        "error",
    ],
    "additionalProperties": False,
}
_SCHEMAS["JobEvent"] = {
    "type": "object",
    "description": "The data of one event of GET /jobs/{job}/events, as JSON: the job as it then stood.",
    "properties": {"id": {"type": "string"}, "status": _JOB_STATUS, "progress": _PROGRESS, "message": _MESSAGE},
    "required": ["id", "status", "progress", "message"],
}
_JOB = {"$ref": "#/components/schemas/Job"}
_LOCATION = {"description": "The job's URL, /jobs/{id} under the server's prefix.", "schema": {"type": "string"}}
_RETRY_AFTER = {"description": "Seconds to wait before asking again.", "schema": {"type": "integer", "minimum": 0}}
#: What a path parameter of a job route is.
_PATH_PARAMETERS = {"job": "The job's id (its `id`)."}
_ENDED = ", ".join(_JOB_STATUSES[2:])
_EVENTS = f"""Server-sent events: one event for each status change or progress report; the stream ends \
after the final status ({_ENDED}). An event reads

    id: 7
    event: running
    data: {{"id": "…", "status": "running", "progress": 0.4, "message": "step 8 of 20"}}

`id` increases from event to event, `event` is the job's status, and `data` is a JobEvent in JSON. \
A line starting with `:` is a comment that keeps a quiet connection open. To resume after a lost \
connection, send the last `id` seen as `Last-Event-ID` (a browser's EventSource does so itself): \
the events after it follow, nothing lost, nothing twice."""


#: The endpoints of a pipeline's own routes, in the order the document lists them.
_OWN = ("run", "submit")


def build_document(registry: Registry, prefix: str = "", keyed: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``registry`` as served under ``prefix`` ("" at the root, "/flask"
    mounted); ``keyed``: the pipeline and job routes need an API key (``--api-key``)."""
    schemas = copy.deepcopy(_SCHEMAS)
    paths: dict[str, Any] = {}
    pipelines = sorted(registry.pipelines.items())
    # The paths of the core's route table, in its order, but for each pipeline's own: those go
    # together, /run first, where the table has its first pipeline route. The pages (/, /docs,
    # /ui) and this document itself are for people and tools, not operations of the API.
    own_routes = [route for route in ROUTES if route.parameters == ("pipeline",) and route.endpoint in _OWN]
    for route in ROUTES:
        if route.endpoint == "status":
            paths[route.path] = {
                "get": {
                    "operationId": "status",
                    "summary": "The pipelines served, and those that failed to load",
                    "responses": {"200": _json_response("Status", {"$ref": "#/components/schemas/Status"})},
                }
            }
        elif route.endpoint in _JOB_OPERATIONS:
            paths[route.path] = _JOB_OPERATIONS[route.endpoint](route)
        elif route is own_routes[0]:
            for name, pipeline in pipelines:
                operations = _operations(pipeline, schemas, _submit_path(name))
                for own in sorted(own_routes, key=lambda route: _OWN.index(route.endpoint)):
                    paths[own.path.replace("{pipeline}", name)] = operations[own.endpoint]
    # Tags order Swagger UI's sections: the pipelines, then the jobs they share.
    tags: list[dict[str, str]] = []
    for name, pipeline in pipelines:
        description = _prose(pipeline.description)
        tags.append({"name": name, "description": description} if description else {"name": name})
    tags.append({"name": "jobs", "description": "Runs as resources: follow, fetch and cancel a job of any pipeline."})
    components: dict[str, Any] = {"schemas": schemas}
    if keyed:
        # Both ways a key is accepted, so Swagger UI's Authorize offers either; every operation
        # but /status needs one of them.
        components["securitySchemes"] = _SECURITY_SCHEMES
        for path, item in paths.items():
            if path == "/status":
                continue
            for method, operation in item.items():
                if method == "parameters":  # the path's own, shared by its operations
                    continue
                operation["security"] = [{name: []} for name in _SECURITY_SCHEMES]
                unauthorized = _json_response("No API key, or not one of the server's", _ERROR)
                operation["responses"] = {**operation["responses"], "401": unauthorized}  # never a shared dict
    return {
        "openapi": "3.1.0",
        "info": {"title": "dualserve", "version": __version__},
        "servers": [{"url": prefix or "/"}],
        "tags": tags,
        "paths": paths,
        "components": components,
    }


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: KEY"},
}


def _submit_path(name: str) -> str:
    return next(route.path for route in ROUTES if route.endpoint == "submit").replace("{pipeline}", name)


def _operations(pipeline: Pipeline, schemas: dict[str, Any], submit_path: str) -> dict[str, dict[str, Any]]:
    """The operations of the pipeline's own routes, by endpoint: ``run`` (GET and POST) and ``submit``."""
    model = pipeline.parameters.model
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    description = _prose(pipeline.description)
    summary, _, _ = (description or f"Run {pipeline.name}").partition("\n")
    responses = {
        "200": {"description": "The result", "content": _result_content(pipeline, schemas)},
        "422": _json_response("Invalid arguments", {"$ref": "#/components/schemas/ValidationError"}),
        "default": _json_response("An error", _ERROR),
    }
    uploads = pipeline.parameters.uploads
    body_type = "multipart/form-data" if uploads else "application/json"
    body = {"required": bool(schema.get("required")), "content": {body_type: {"schema": reference}}}
    controls = _control_parameters(pipeline)
    respond_async = (
        f"With `Prefer: respond-async` (RFC 7240), answered at once with a job instead of the result, as "
        f"POST {submit_path} answers: 202, the Job, `Location` and `Preference-Applied: respond-async` "
        "(201 if `wait=N` is preferred too and the job ended within N seconds)."
    )
    applied = {"schema": {"type": "string", "const": "respond-async"}}
    run: dict[str, Any] = {
        "post": {
            "operationId": f"{pipeline.name}_post",
            "summary": summary,
            "description": f"{description}\n\n{respond_async}".strip(),
            "tags": [pipeline.name],
            "parameters": [
                *controls,
                _prefer("`respond-async`: a job instead of the result (202); with `wait=N` as on the jobs path."),
            ],
            "requestBody": body,
            "responses": {
                **responses,
                "202": _job_response(
                    "Prefer: respond-async: the job",
                    {"Location": _LOCATION, "Retry-After": _RETRY_AFTER, "Preference-Applied": applied},
                ),
                "201": _job_response(
                    "Prefer: respond-async, wait=N, and the job ended within N seconds",
                    {"Location": _LOCATION, "Preference-Applied": applied},
                ),
            },
        }
    }
    if not uploads:  # a GET cannot carry a file
        run["get"] = {
            "operationId": f"{pipeline.name}_get",
            "summary": summary,
            "description": description,
            "tags": [pipeline.name],
            "parameters": [*_query_parameters(schema), *controls],
            "responses": responses,
        }
    submit = {
        "post": {
            "operationId": f"{pipeline.name}_submit",
            "summary": f"Submit a job of {pipeline.name}",
            "description": (
                "Validated as POST /run is, then answered at once with the job (202). At the URL in "
                "`Location`: GET for its status and progress, /events to follow it, /result once it "
                "succeeded, DELETE to cancel it."
            ),
            "tags": [pipeline.name],
            "parameters": [
                *controls,
                _prefer(
                    f"`wait=N`: hold the answer up to N seconds (at most {MAX_WAIT:g}) for the job to end: "
                    "201 if it did, else 202."
                ),
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "The same key with the same request answers the same job, never a second "
                    "run; with another request, 422.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
            ],
            "requestBody": body,
            "responses": {
                "202": _job_response("Accepted: the job", {"Location": _LOCATION, "Retry-After": _RETRY_AFTER}),
                "201": _job_response("Prefer: wait=N, and the job ended within N seconds", {"Location": _LOCATION}),
                "404": _json_response("No such pipeline", _ERROR),
                "422": _json_response(
                    "Invalid arguments (as from POST /run), or an Idempotency-Key already used with another request",
                    {"anyOf": [{"$ref": "#/components/schemas/ValidationError"}, _ERROR]},
                ),
                "default": _json_response("An error", _ERROR),
            },
        }
    }
    return {"run": run, "submit": submit}


def _prefer(description: str) -> dict[str, Any]:
    return {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": f"RFC 7240 preferences. {description}",
        "schema": {"type": "string"},
    }


def _job_response(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {**_json_response(description, _JOB), "headers": headers}


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": _PATH_PARAMETERS[name],
            "schema": {"type": "string"},
        }
        for name in route.parameters
    ]


def _no_job() -> dict[str, Any]:
    return _json_response("No such job: unknown, expired or deleted", _ERROR)


def _job(route: Route) -> dict[str, Any]:
    return {
        "parameters": _path_parameters(route),
        "get": {
            "operationId": "job_get",
            "summary": "A job: its status and progress",
            "tags": ["jobs"],
            "responses": {"200": _json_response("The job", _JOB), "404": _no_job()},
        },
        "delete": {
            "operationId": "job_delete",
            "summary": "Cancel a job and delete it",
            "description": "A queued job never runs; a running one is asked to stop (its next "
            "dualserve.progress() call raises Canceled). The job and its result are deleted: 404 afterwards.",
            "tags": ["jobs"],
            "responses": {"200": _json_response("The job, canceled unless it had ended", _JOB), "404": _no_job()},
        },
    }


def _job_result(route: Route) -> dict[str, Any]:
    stored = {"schema": BINARY}
    return {
        "parameters": _path_parameters(route),
        "get": {
            "operationId": "job_result",
            "summary": "A job's result",
            "description": "The answer POST /{pipeline}/run would have given (its status, media type, headers "
            "and bytes), served from the result store without running the pipeline again: an ETag stable "
            "for the job's life, Range, If-Range and 304.",
            "tags": ["jobs"],
            "responses": {
                "200": {
                    "description": "The job succeeded: its result, of the pipeline's media type (with the "
                    "status the run answered, 200 unless the pipeline chose another)",
                    "headers": {"ETag": {"schema": {"type": "string"}}},
                    "content": {"*/*": stored},
                },
                "206": {"description": "The Range asked for", "content": {"*/*": stored}},
                "304": {"description": "Not modified: the client's copy (If-None-Match) is current"},
                "404": _no_job(),
                "409": {
                    **_json_response("The job has not ended yet", _ERROR),
                    "headers": {"Retry-After": _RETRY_AFTER},
                },
                "410": _json_response("The job was canceled, or its result is no longer stored", _ERROR),
                "default": _json_response("The job failed: the status and detail it ended with (its error)", _ERROR),
            },
        },
    }


def _job_events(route: Route) -> dict[str, Any]:
    return {
        "parameters": _path_parameters(route),
        "get": {
            "operationId": "job_events",
            "summary": "A job's progress, as server-sent events",
            "description": _EVENTS,
            "tags": ["jobs"],
            "parameters": [
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The last event id received: only the events after it are sent.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            ],
            "responses": {
                "200": {
                    "description": "The events, to the job's end",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "404": _no_job(),
            },
        },
    }


#: The operations of the job routes shared by every pipeline, by endpoint.
_JOB_OPERATIONS: dict[str, Callable[[Route], dict[str, Any]]] = {
    "job": _job,
    "job_result": _job_result,
    "job_events": _job_events,
}


def _prose(docstring: str | None) -> str:
    """A docstring without its Args/Returns sections: those are in the schemas already."""
    lines = []
    for line in (docstring or "").splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:", "Returns:", "Raises:", "Yields:"):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema.get("properties", {}).items():
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in field:
            parameter["description"] = field["description"]
        if _is_simple(field):
            parameter["schema"] = field
            if field.get("type") == "array":
                parameter.update(style="form", explode=True)
        else:
            # Models and other structures travel as JSON text (the core reads such values as JSON).
            parameter["content"] = {"application/json": {"schema": field}}
        parameters.append(parameter)
    return parameters


def _is_simple(schema: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return False
    if "anyOf" in schema:
        return all(_is_simple(option) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return _is_simple(schema.get("items", {}))
    return schema.get("type") != "object"


def _control_parameters(pipeline: Pipeline) -> list[dict[str, Any]]:
    kind = _kind(pipeline)
    parameters = []
    if kind in ("image", "images") and "format" in pipeline.controls:
        parameters.append(
            {
                "name": "format",
                "in": "query",
                "required": False,
                "description": "The image format, ahead of the Accept header.",
                "schema": {"type": "string", "enum": ["png", "jpeg", "webp"]},
            }
        )
    if kind == "images" and "index" in pipeline.controls:
        parameters.append(
            {
                "name": "index",
                "in": "query",
                "required": False,
                "description": "Only this item (from 0), as binary.",
                "schema": {"type": "integer", "minimum": 0},
            }
        )
    return parameters


def _result_content(pipeline: Pipeline, schemas: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(pipeline)
    declared = pipeline.media_types
    if kind == "image":
        offers = [media_type for media_type in declared if media_type in IMAGE_TYPES] or list(IMAGE_TYPES)
        content = {media_type: {"schema": BINARY} for media_type in offers}
        content["application/json"] = {"schema": {"$ref": "#/components/schemas/EncodedMedia"}}
        return content
    if kind == "images":
        return {
            "application/zip": {"schema": BINARY},
            **{media_type: {"schema": BINARY} for media_type in IMAGE_TYPES},
            "application/json": {"schema": {"$ref": "#/components/schemas/EncodedItems"}},
        }
    if declared:
        return {media_type: {"schema": BINARY} for media_type in declared}
    if kind == "text":
        return {"text/plain": {"schema": {"type": "string"}}}
    if kind == "json":
        return {"application/json": {"schema": _json_schema(pipeline.return_annotation, schemas)}}
    if kind == "stream":
        return {"application/octet-stream": {"schema": BINARY}}
    # Bytes are sniffed and files typed by name at run time; a Media or a Response says its own
    # type; with no annotation nothing is known: any type, as binary.
    return {"*/*": {"schema": BINARY}}


def _kind(pipeline: Pipeline) -> str:
    annotation = pipeline.return_annotation
    if annotation is inspect.Signature.empty or annotation is typing.Any:
        return "unknown"
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if _is_image_type(annotation):
        return "image"
    if (
        origin in (list, tuple, collections.abc.Sequence)
        and args
        and all(_is_image_type(a) for a in args if a is not ...)
    ):
        return "images"
    if isinstance(origin, type):
        if issubclass(origin, (bytes, bytearray, memoryview, io.BytesIO)):
            return "bytes"
        if issubclass(origin, os.PathLike):
            return "file"
        if issubclass(origin, Media) or _is_response(origin):
            return "media"
        if issubclass(origin, (collections.abc.Iterator, collections.abc.AsyncIterator)):
            return "text" if args and args[0] is str else "stream"
    return "json"


def _is_image_type(annotation: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    return any(
        (cls.__module__, cls.__name__) in (("PIL.Image", "Image"), ("numpy", "ndarray")) for cls in annotation.__mro__
    )


def _is_response(cls: type) -> bool:
    families = ("starlette", "werkzeug", "flask")
    return any(base.__name__ == "Response" and base.__module__.split(".")[0] in families for base in cls.__mro__)


def _json_schema(annotation: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        schema: dict[str, Any] = adapter.json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
    except Exception:  # an annotation pydantic cannot describe: still JSON, of any shape
        return {}
    schemas.update(schema.pop("$defs", {}))
    return schema


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
