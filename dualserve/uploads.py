"""``UploadFile``: a neutral uploaded file, the same on every frontend. No web framework."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["UploadFile"]


@dataclass
class UploadFile:
    """A file sent in a ``multipart/form-data`` request.

    Type a ``run_api`` parameter as ``UploadFile`` (or ``list[UploadFile]``) to receive one; the
    request then becomes multipart. Adapters build it from their framework's upload object.

    :param filename: the name the client gave, never trusted as a path.
    :param content_type: the part's ``Content-Type``.
    :param stream: a binary file object positioned at the start, spooled to disk when large.
    """

    filename: str | None
    content_type: str | None
    stream: IO[bytes]

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Uploads are built by the adapters, never parsed from JSON: accept instances only.
        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "binary"}
