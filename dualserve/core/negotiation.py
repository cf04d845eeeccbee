"""Content negotiation: which representation of an image or of several items a request gets.

No web framework; ``Accept`` is parsed by Werkzeug's sans-IO ``parse_accept_header``, q-values and
wildcards included. An image's format comes from ``Media(format=...)``, else ``?format=`` (either wins over an
``Accept`` that does not name it), else
``Accept``, else the first type offered (PNG unless ``@produces`` says otherwise); ``Accept:
application/json`` wraps it as ``{"media_type", "data"}`` in base64. Several items are a zip by
default, ``{"count", "items"}`` for ``Accept: application/json``, or one item with ``?index=i``.
Every negotiated answer carries ``Vary: Accept``.

``format`` and ``index`` are read from the query string only when ``run_api`` has no parameter of
that name: a wrapper's own parameters always win.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import mimetypes
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from ..exceptions import HTTPError, ValidationError
from .images import FORMATS, format_for
from .request import Request
from .returns import BytesResult, ImageResult, JSONResult, ManyResult, Result, StreamResult, encode, encode_json

__all__ = ["CONTROLS", "negotiate"]

JSON = "application/json"
ZIP = "application/zip"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Query parameters negotiation reads, unless run_api has parameters of these names.
CONTROLS = frozenset({"format", "index"})
_VARY = ("vary", "Accept")


def negotiate(result: Result, request: Request, name: str, controls: frozenset[str] = CONTROLS) -> Result:
    """The representation of ``result`` that ``request`` asks for; other results pass unchanged.

    :param name: the pipeline's name, for the zip's file name.
    :param controls: which of ``format`` and ``index`` the query string may set.
    """
    if not isinstance(result, (ImageResult, ManyResult)):
        return result
    query = _query(request, controls)
    accept = parse_accept_header(request.headers.get("accept"), MIMEAccept)
    if isinstance(result, ImageResult):
        return _image(result, accept, query.get("format"))
    if "index" in query:
        return _one(result, accept, query)
    chosen = _choose(accept, (ZIP, JSON))
    if chosen == JSON:
        items = [_item_json(index, item, query.get("format")) for index, item in enumerate(result.items)]
        return _vary(JSONResult(body=encode_json({"count": len(items), "items": items}), media_type=JSON))
    return _vary(
        StreamResult(
            chunks=_zip(result.items, query.get("format")),
            media_type=ZIP,
            filename=f"{name}.zip",
            disposition="attachment",
            status_code=result.status_code,
            max_age=result.max_age,
            headers=result.headers,
        )
    )


def _image(result: ImageResult, accept: MIMEAccept, query_format: str | None) -> Result:
    fixed = result.format or query_format
    offers = (FORMATS[fixed.lower()][0],) if fixed else result.offers
    # An explicit format (Media(format=...), then ?format=) wins over Accept: Accept only decides
    # between it and its base64 JSON, and an Accept that names neither gets the format, not a 406.
    chosen = _choose(accept, (*offers, JSON), fallback=offers[0] if fixed else None)
    if chosen == JSON:
        encoded = encode(result, format_for(offers[0]) or "png")
        document = {"media_type": encoded.media_type, "data": base64.b64encode(encoded.body).decode("ascii")}
        return _vary(
            dataclasses.replace(JSONResult(body=encode_json(document), media_type=JSON), headers=result.headers)
        )
    return _vary(encode(result, format_for(chosen) or "png"))


def _one(result: ManyResult, accept: MIMEAccept, query: dict[str, str]) -> Result:
    raw = query["index"]
    if not raw.lstrip("-").isdigit():
        raise ValidationError(
            [{"loc": ["query", "index"], "msg": "Input should be a valid integer", "type": "int_parsing"}]
        )
    index = int(raw)
    if not 0 <= index < len(result.items):
        raise HTTPError(404, f"Item {index} does not exist: there are {len(result.items)}, from 0.")
    item = result.items[index]
    if isinstance(item, ImageResult):
        return _image(item, accept, query.get("format"))
    return _vary(item)


def _choose(accept: MIMEAccept, offers: Sequence[str], fallback: str | None = None) -> str:
    if not accept:
        return offers[0]
    chosen = accept.best_match(offers) or fallback
    if chosen is None:
        raise HTTPError(406, f"None of the accepted types is offered. Offered: {', '.join(offers)}.")
    return str(chosen)


def _query(request: Request, controls: frozenset[str]) -> dict[str, str]:
    query = {key: value for key, value in request.query if key in controls}
    fmt = query.get("format")
    if fmt is not None and fmt.lower() not in FORMATS:
        raise ValidationError(
            [{"loc": ["query", "format"], "msg": "Input should be 'png', 'jpeg' or 'webp'", "type": "enum"}]
        )
    return query


def _vary(result: Result) -> Result:
    return dataclasses.replace(result, headers=(*result.headers, _VARY))


def _encoded(item: BytesResult | ImageResult, query_format: str | None) -> BytesResult:
    if isinstance(item, ImageResult):
        return encode(item, item.format or query_format or format_for(item.offers[0]) or "png")
    return item


def _item_json(index: int, item: BytesResult | ImageResult, query_format: str | None) -> dict[str, Any]:
    encoded = _encoded(item, query_format)
    return {"index": index, "media_type": encoded.media_type, "data": base64.b64encode(encoded.body).decode("ascii")}


def _zip(items: Sequence[BytesResult | ImageResult], query_format: str | None) -> Iterator[bytes]:
    """A zip streamed entry by entry: each item is encoded only when its turn comes."""
    buffer = _Drain()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, item in enumerate(items):
            encoded = _encoded(item, query_format)
            archive.writestr(_entry(_entry_name(index, encoded)), encoded.body)
            yield buffer.take()
    yield buffer.take()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed time (zip's epoch, as wheels use), not the moment of writing: the same items make
    # the same zip bytes on every frontend, whichever second each one answered in.
    entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    entry.external_attr = 0o644 << 16  # rw-r--r-- for unzip, instead of no permissions at all
    return entry


def _entry_name(index: int, item: BytesResult) -> str:
    if item.filename:
        return item.filename
    media_type = (item.media_type or "").split(";", 1)[0]
    extension = {"image/jpeg": ".jpg", "application/octet-stream": ".bin"}.get(media_type)
    extension = extension or mimetypes.guess_extension(media_type) or ".bin"
    kind = "image" if media_type.startswith("image/") else "item"
    return f"{kind}_{index}{extension}"


class _Drain(io.RawIOBase):
    """A write-only, unseekable file: zipfile writes into it, the generator takes what it wrote."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data
