"""Framework response objects, turned into core results so Hayhooks wrappers run on both frontends.

No web framework is imported: Starlette's ``Response``, ``FileResponse`` and ``StreamingResponse``
and Werkzeug's ``Response`` (``send_file`` included) are recognised by class and read through
their public attributes. Their status, body and headers are kept; the headers the contract
decides (length, validators, ranges) are computed again, so the answer is the same on FastAPI
and Flask and gets HEAD, Range and 304 like any other result. A file response is of a stored file
(Range answered) unless the run created it, which the serving layer marks ``delete_after``; bytes
and streams are the run's own (Range ignored). A background task or
``call_on_close`` function runs once the response is over, as it would have.

A subclass that overrides how it sends itself (its own ``__call__``) cannot be read this way: it
is passed through untouched on its own framework and refused with a JSON 500 on the other.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from .returns import BytesResult, PassthroughResult, Result, StreamResult, path_result, response_framework

__all__ = ["read_framework_response"]

# Headers recomputed by the core from the body, rather than copied.
_RECOMPUTED = frozenset(
    {"content-length", "content-type", "etag", "last-modified", "accept-ranges", "transfer-encoding"}
)
_STARLETTE = "starlette.responses"
_WERKZEUG = ("werkzeug.wrappers.response", "werkzeug.sansio.response", "flask.wrappers")


def read_framework_response(value: Any, cleanups: list[Callable[[], object]]) -> Result | None:
    """A core result for a framework response, or None when ``value`` is not one.

    :param cleanups: receives the response's background work, to run once the answer is over.
    """
    framework = response_framework(value)
    if framework is None:
        return None
    if _sends_itself(value, framework):
        return PassthroughResult(response=value, framework=framework, media_type=None)
    if framework == "starlette":
        return _from_starlette(value, cleanups)
    return _from_werkzeug(value, cleanups)


def _sends_itself(value: Any, framework: Literal["starlette", "werkzeug"]) -> bool:
    owner = next(cls for cls in type(value).__mro__ if "__call__" in vars(cls))
    return owner.__module__ not in ((_STARLETTE,) if framework == "starlette" else _WERKZEUG)


def _from_starlette(response: Any, cleanups: list[Callable[[], object]]) -> Result:
    if response.background is not None:
        cleanups.append(response.background)
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]
    kept, media_type = _split(headers)
    common: dict[str, Any] = {"status_code": response.status_code, "headers": kept}
    if hasattr(response, "path"):  # FileResponse
        return path_result(Path(response.path), media_type or response.media_type, filename=None, **common)
    if hasattr(response, "body_iterator"):  # StreamingResponse
        whole = _whole(_starlette_content(response.body_iterator), media_type, common)
        if whole is not None:
            return whole
        return StreamResult(chunks=response.body_iterator, media_type=media_type, **common)
    return BytesResult(body=bytes(response.body), media_type=media_type or "application/octet-stream", **common)


def _from_werkzeug(response: Any, cleanups: list[Callable[[], object]]) -> Result:
    cleanups.append(response.close)  # call_on_close functions, and the body's own close()
    kept, media_type = _split(list(response.headers.items()))
    common: dict[str, Any] = {"status_code": response.status_code, "headers": kept}
    body = response.response
    name = getattr(getattr(body, "file", None), "name", None)
    if response.direct_passthrough and isinstance(name, str) and Path(name).is_file():  # send_file(path)
        return path_result(Path(name), media_type, filename=None, **common)
    if response.is_sequence:
        return BytesResult(body=response.get_data(), media_type=media_type or "application/octet-stream", **common)
    whole = _whole(getattr(body, "file", body), media_type, common)  # send_file(BytesIO): a FileWrapper
    if whole is not None:
        return whole
    return StreamResult(chunks=_iterate(body), media_type=media_type, **common)


def _starlette_content(body_iterator: Any) -> Any:
    """What a StreamingResponse was given, when it was a sync iterable: Starlette wraps it in
    ``iterate_in_threadpool``, whose not yet started frame still holds it."""
    code = getattr(body_iterator, "ag_code", None)
    frame = getattr(body_iterator, "ag_frame", None)
    if code is None or frame is None or code.co_name != "iterate_in_threadpool":
        return None
    return frame.f_locals.get("iterator")


def _whole(content: Any, media_type: str | None, common: dict[str, Any]) -> Result | None:
    """A response over a ``BytesIO`` or a binary file, sent whole: a ``BytesIO`` iterated is one
    chunk per *line* (3,201 chunks of at most 260 bytes for seed 003's WAV), with no length; a
    file of its own on disk is served as a file (Range, ETag, sendfile)."""
    if isinstance(content, io.BytesIO):
        return BytesResult(body=content.getvalue(), media_type=media_type or "application/octet-stream", **common)
    name = getattr(content, "name", None)
    if isinstance(content, io.BufferedReader) and isinstance(name, str) and Path(name).is_file():
        content.close()  # served from its path; the response's own handle is not needed
        return path_result(Path(name), media_type, filename=None, **common)
    return None


def _iterate(body: Iterable[Any]) -> Any:
    # A plain iterator over the body; closing it is left to response.close(), in the cleanups.
    yield from body


def _split(headers: list[tuple[str, str]]) -> tuple[tuple[tuple[str, str], ...], str | None]:
    media_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    kept = tuple((name.lower(), value) for name, value in headers if name.lower() not in _RECOMPUTED)
    return kept, media_type
