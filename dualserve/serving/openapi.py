"""One OpenAPI 3.1 document for every frontend, built from the wrappers. No web framework.

Request schemas come from ``run_api``'s signature (descriptions from its docstring), an upload
parameter makes the body ``multipart/form-data``, and the 200 response lists exactly the media
types the wrapper can produce: what ``@produces`` declares, else what the return annotation says
(bytes and files as ``format: binary``, images as PNG, JPEG and WebP plus their base64 JSON,
several images as a zip or JSON, JSON results with their real schema). The frontends differ only
in ``servers``, which names the prefix each is mounted at.
"""

from __future__ import annotations

import collections.abc
import copy
import inspect
import io
import os
import typing
from typing import Any

from pydantic import TypeAdapter

from ..__version__ import __version__
from ..core.returns import IMAGE_TYPES
from ..core.routes import ROUTES
from ..media import Media
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


def build_document(registry: Registry, prefix: str = "") -> dict[str, Any]:
    """The OpenAPI document of ``registry`` as served under ``prefix`` ("" at the root, "/flask" mounted)."""
    schemas = copy.deepcopy(_SCHEMAS)
    paths: dict[str, Any] = {}
    # The paths of the core's route table, in its order. The pages (/, /docs, /ui) and this
    # document itself are for people and tools, not operations of the API.
    for route in ROUTES:
        if route.endpoint == "status":
            paths[route.path] = {
                "get": {
                    "operationId": "status",
                    "summary": "The pipelines served, and those that failed to load",
                    "responses": {"200": _json_response("Status", {"$ref": "#/components/schemas/Status"})},
                }
            }
        elif route.endpoint == "run" and route.parameters == ("pipeline",):
            for name, pipeline in sorted(registry.pipelines.items()):
                paths[route.path.replace("{pipeline}", name)] = _operations(pipeline, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "dualserve", "version": __version__},
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _operations(pipeline: Pipeline, schemas: dict[str, Any]) -> dict[str, Any]:
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
    controls = _control_parameters(pipeline)
    operations: dict[str, Any] = {
        "post": {
            "operationId": f"{pipeline.name}_post",
            "summary": summary,
            "description": description,
            "tags": [pipeline.name],
            "parameters": controls,
            "requestBody": {"required": bool(schema.get("required")), "content": {body_type: {"schema": reference}}},
            "responses": responses,
        }
    }
    if not uploads:  # a GET cannot carry a file
        operations["get"] = {
            "operationId": f"{pipeline.name}_get",
            "summary": summary,
            "description": description,
            "tags": [pipeline.name],
            "parameters": [*_query_parameters(schema), *controls],
            "responses": responses,
        }
    return operations


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
