"""The neutral return protocol: whatever ``run_api`` returned, as a :class:`Result`.

This module is the framework-free heart of dualserve, in the spirit of ``flask/sansio``: it
cannot import a web framework and cannot do request or response IO. It only looks at the value
(reading a file's metadata, or its first bytes to sniff a type) and decides what a client will
be sent. ``dualserve.core.http`` then turns a Result and a request into status, headers and a body.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic_core

from ..exceptions import HTTPError, ResolveError
from ..media import Media
from ..paths import safe_path
from .header_fields import checked
from .images import FORMATS, check_image, encode_image, format_for, is_image
from .sniff import OCTET_STREAM, guess_from_bytes, guess_from_name

__all__ = [
    "FILE_CHUNK_SIZE",
    "IMAGE_TYPES",
    "BytesResult",
    "ImageResult",
    "ManyResult",
    "JSONResult",
    "PassthroughResult",
    "PathResult",
    "Result",
    "StreamResult",
    "TEXT_PLAIN",
    "encode",
    "encode_json",
    "is_blocking",
    "response_framework",
    "path_result",
    "resolve",
]

TEXT_PLAIN = "text/plain; charset=utf-8"
JSON = "application/json"
# Files, and binary file objects other than BytesIO, are read in pieces this large: 1 MiB, where
# sendfile, the OS and the frontends all move data fast, at little memory per response.
FILE_CHUNK_SIZE = 1024 * 1024

Chunks = Iterator[Any] | AsyncIterator[Any]
#: What an image result can become, in the server's order of preference.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True, kw_only=True)
class Result:
    """What to send for a full ``GET``; the HTTP rules in ``dualserve.core.http`` refine it per request."""

    #: Media results get validators (ETag), byte ranges and ``Cache-Control``; JSON answers stay lean.
    is_media: ClassVar[bool] = True

    media_type: str | None
    status_code: int = 200
    filename: str | None = None
    disposition: Literal["inline", "attachment"] = "inline"
    headers: tuple[tuple[str, str], ...] = ()
    max_age: int | None = None


@dataclass(frozen=True, kw_only=True)
class BytesResult(Result):
    body: bytes
    #: The server keeps exactly these bytes for the representation's life (a cached result, a
    #: job's result from the store), so a Range of them continues the same answer. Bytes a run
    #: made, an image encoded per request or JSON are not stored: the next run may differ, so
    #: their Range is ignored (never spliced; see ``dualserve.core.http``).
    stored: bool = False


@dataclass(frozen=True, kw_only=True)
class JSONResult(BytesResult):
    is_media: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class PathResult(Result):
    path: Path
    size: int
    mtime: float
    delete_after: bool = False
    #: A file that was there before the run (a wrapper's own file, a page asset, a stored
    #: result): Range and If-Range are answered. A file deleted after the answer (``delete_after``,
    #: a temp file the run created) is never taken as stored, whatever this says.
    stored: bool = False


@dataclass(frozen=True, kw_only=True)
class StreamResult(Result):
    """A stream; ``media_type`` stays ``None`` until the first chunk tells bytes from text."""

    chunks: Chunks


@dataclass(frozen=True, kw_only=True)
class ImageResult(Result):
    """A PIL image or numpy array, encoded once the request has chosen a format."""

    image: Any
    #: Fixed by ``Media(format=...)``; otherwise ``?format=`` or ``Accept`` decides.
    format: str | None = None
    quality: int | None = None
    #: The image media types this result may be encoded as, the default first.
    offers: tuple[str, ...] = IMAGE_TYPES


@dataclass(frozen=True, kw_only=True)
class ManyResult(Result):
    """Several images or byte strings: a zip, a JSON list, or one item by ``?index=``."""

    items: tuple[BytesResult | ImageResult, ...]


@dataclass(frozen=True, kw_only=True)
class PassthroughResult(Result):
    """A framework's own response object, passed through on the frontend of that framework."""

    response: Any
    framework: Literal["starlette", "werkzeug"]


def resolve(value: Any, declared: tuple[str, ...] = ()) -> Result:
    """Turn a ``run_api`` return value into a :class:`Result`.

    :param value: what ``run_api`` returned.
    :param declared: the media types given to ``@produces``; the first one types bytes and streams.
    """
    if isinstance(value, Media):
        return _resolve_media(value, declared)
    media_type = declared[0] if declared else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value), media_type)
    if isinstance(value, os.PathLike):
        return path_result(Path(os.fspath(value)), media_type)
    if isinstance(value, io.BytesIO):
        # The classic StreamingResponse(BytesIO) mistake: the bytes are all here, so send them whole.
        return _bytes(value.getvalue(), media_type)
    if is_image(value):
        return _image(value, declared)
    if isinstance(value, (list, tuple)) and value and all(_is_item(item) for item in value):
        return ManyResult(items=tuple(_item(item) for item in value), media_type=None)
    if isinstance(value, io.IOBase):
        if not hasattr(value, "readinto"):
            raise ResolveError(f"run_api returned a text file ({type(value).__name__}); open it in binary mode.")
        return StreamResult(chunks=_read_file(value), media_type=media_type)
    if isinstance(value, (Iterator, AsyncIterator)):
        return StreamResult(chunks=value, media_type=media_type)
    framework = response_framework(value)
    if framework is not None:
        return PassthroughResult(response=value, framework=framework, media_type=None)
    # Everything else, str included (a str is never a path), is data for the client as JSON.
    return JSONResult(body=encode_json(value), media_type=JSON)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; pydantic models, dataclasses, dates, UUIDs and enums included."""
    try:
        # NaN and infinities as null, as pydantic's model_dump_json writes them: the default,
        # bare NaN and Infinity, is not JSON, and strict parsers (browsers' JSON.parse) refuse it.
        return pydantic_core.to_json(value, inf_nan_mode="null")
    except pydantic_core.PydanticSerializationError as exc:
        raise ResolveError(
            f"run_api returned a {type(value).__name__}, which is not bytes, a path, an iterator, an image, "
            f"a Media, a Response, nor serialisable as JSON: {exc}"
        ) from exc


def response_framework(value: Any) -> Literal["starlette", "werkzeug"] | None:
    """Which framework a response object belongs to, found without importing either."""
    for cls in type(value).__mro__:
        if cls.__name__ == "Response":
            if cls.__module__ == "starlette.responses":
                return "starlette"
            if cls.__module__ in ("werkzeug.wrappers.response", "werkzeug.sansio.response"):
                return "werkzeug"
    return None


def is_blocking(value: Any) -> bool:
    """Whether serving ``value`` takes real CPU time (encoding images), so belongs off an event loop."""
    if isinstance(value, Media):
        value = value.content
    if isinstance(value, (list, tuple)):
        return any(_is_item(item) for item in value)
    return is_image(value)


def _resolve_media(media: Media, declared: tuple[str, ...]) -> Result:
    content = media.content
    if media.root is not None:
        if not isinstance(content, (str, os.PathLike)):
            raise ResolveError("Media(root=...) needs a path or a file name as content.")
        content = safe_path(media.root, content)
    try:
        return _media_result(media, content, declared)
    except Exception:
        if media.delete_after and isinstance(content, os.PathLike):
            # The file was handed over to be deleted; a file that cannot be served is deleted too.
            with contextlib.suppress(OSError):
                Path(content).unlink(missing_ok=True)
        raise


def _media_result(media: Media, content: Any, declared: tuple[str, ...]) -> Result:
    if isinstance(content, Media):
        raise ResolveError("Media(content=...) cannot be another Media.")
    if media.format is not None or media.quality is not None:
        if not is_image(content):
            raise ResolveError("Media(format=..., quality=...) applies to images only.")
        if media.format is not None and media.format.lower() not in FORMATS:
            raise ResolveError(f"Media(format={media.format!r}) is not one of png, jpeg, webp.")
        result: Result = _image(content, declared, media.format, media.quality)
    else:
        result = resolve(content, (media.media_type,) if media.media_type else declared)
    if isinstance(result, PassthroughResult):
        raise ResolveError("Media(content=...) cannot wrap a framework Response; return the Response itself.")
    if media.delete_after and not isinstance(result, PathResult):
        raise ResolveError("Media(delete_after=True) needs a path as content.")
    media_type = result.media_type
    if media.media_type is None and media.filename and isinstance(result, BytesResult) and _unknown(media_type):
        media_type = guess_from_name(media.filename) or media_type
    changes: dict[str, Any] = {
        "media_type": media_type,
        "filename": media.filename if media.filename is not None else result.filename,
        "disposition": media.disposition,
        "headers": tuple(checked(media.headers.items(), "Media(headers=...)")),
        "status_code": media.status_code,
        "max_age": media.max_age,
    }
    if isinstance(result, PathResult):
        # A file handed over to be deleted is this run's own: not stored, its Range ignored.
        changes["delete_after"] = media.delete_after
        changes["stored"] = result.stored and not media.delete_after
    return dataclasses.replace(result, **changes)


def _bytes(body: bytes, media_type: str | None) -> BytesResult:
    return BytesResult(body=body, media_type=media_type or guess_from_bytes(body) or OCTET_STREAM)


def _image(value: Any, declared: tuple[str, ...], format: str | None = None, quality: int | None = None) -> ImageResult:
    # Declared image types narrow what negotiation may pick; the first one is the default.
    # One declared type is the only offer, not an explicit format: an Accept that wants another
    # is still a 406, where Media(format=...) or ?format= would win.
    offers = tuple(dict.fromkeys(FORMATS[name][0] for media_type in declared if (name := format_for(media_type))))
    try:
        check_image(value)
    except TypeError as exc:
        raise ResolveError(str(exc)) from exc
    return ImageResult(image=value, format=format, quality=quality, offers=offers or IMAGE_TYPES, media_type=None)


def encode(result: ImageResult, format: str) -> BytesResult:
    """Encode an image result as ``format`` (png, jpeg or webp)."""
    try:
        body, media_type = encode_image(result.image, format, result.quality)
    except (TypeError, ValueError, OSError) as exc:
        raise ResolveError(str(exc)) from exc
    # Everything the image result carried (status, name, headers, caching) carries over.
    common = {field.name: getattr(result, field.name) for field in dataclasses.fields(Result)}
    return BytesResult(**{**common, "media_type": media_type}, body=body)


def _is_item(value: Any) -> bool:
    if isinstance(value, Media):
        return _is_item(value.content)
    return isinstance(value, (bytes, bytearray, memoryview)) or is_image(value)


def _item(value: Any) -> BytesResult | ImageResult:
    result = resolve(value)
    assert isinstance(result, (BytesResult, ImageResult))
    return result


def path_result(path: Path, media_type: str | None, *, stored: bool = True, **fields: Any) -> PathResult:
    """The result for a file: its size and time read now, its type declared, by extension, or sniffed.

    :param stored: whether the file keeps these bytes beyond this answer, so a Range of it is
        answered. True for the files a wrapper, a framework response or the server names: kept on
        disk, not made per request. The one exception, a temp file the run created, is marked
        ``delete_after`` (by ``Media(delete_after=True)`` or the serving layer), which ``render``
        never takes as stored.
    :param fields: other Result fields; ``filename`` defaults to the file's name.
    """
    # A missing or unreadable file fails here, before any header is sent, so it becomes a JSON error.
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise HTTPError(404, "File not found.") from None
    if not path.is_file():
        raise ResolveError(f"run_api returned the path {path.name!r}, which is not a regular file.")
    if media_type is None:
        media_type = guess_from_name(path.name)
    try:
        # Opened even when the name gives the type: a file the server may not read (permissions,
        # an I/O error) must fail now, as a JSON 500, not after a 200 status line has gone out.
        with path.open("rb") as file:
            if media_type is None:
                media_type = guess_from_bytes(file.read(8192))
    except OSError as exc:
        raise ResolveError(f"run_api returned the path {path.name!r}, which cannot be read: {exc.strerror}.") from exc
    fields.setdefault("filename", path.name)
    fields["stored"] = stored
    return PathResult(
        path=path, size=stat.st_size, mtime=stat.st_mtime, media_type=media_type or OCTET_STREAM, **fields
    )


def _read_file(file: Any) -> Iterator[bytes]:
    with file:
        while chunk := file.read(FILE_CHUNK_SIZE):
            yield chunk


def _unknown(media_type: str | None) -> bool:
    return media_type in (None, OCTET_STREAM)
