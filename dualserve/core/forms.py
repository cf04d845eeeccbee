"""Form bodies (``multipart/form-data`` and urlencoded), parsed once for every frontend.

No web framework: Werkzeug's stream-level ``FormDataParser`` reads the body the adapter already
read under the size limit. Starlette and Werkzeug disagree on broken forms (Starlette raises,
Werkzeug silently drops the parts), so neither framework's own form parsing is used.
"""

from __future__ import annotations

import io
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, default_stream_factory
from werkzeug.http import parse_options_header

from ..uploads import UploadFile

__all__ = ["FORM_TYPES", "MAX_FORM_FIELD_SIZE", "MAX_FORM_PARTS", "FormTooLarge", "is_form", "parse_form"]

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
#: More parts than any real form has; a bound on the work one request can cause, for both kinds.
MAX_FORM_PARTS = 1000
#: The largest text field (or part head) of a multipart form, held in memory; files are spooled.
#: Werkzeug searches a part's head again on every chunk, so a 20 MB file name cost seconds of CPU.
MAX_FORM_FIELD_SIZE = 1024 * 1024


class FormTooLarge(ValueError):
    """The form has too many fields, or a field too large to hold in memory."""


def is_form(content_type: str | None) -> bool:
    return parse_options_header(content_type)[0] in FORM_TYPES


def parse_form(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    """The fields, then the files as :class:`UploadFile`; :class:`FormTooLarge` for a form over the
    bounds, ``ValueError`` for a malformed body."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == FORM_TYPES[1] and body.count(b"&") >= MAX_FORM_PARTS:
        # Werkzeug bounds the parts of a multipart form only; counted before anything is decoded.
        raise FormTooLarge(f"The form has more than {MAX_FORM_PARTS} fields.")
    opened: list[IO[bytes]] = []

    def stream_factory(*args: Any, **kwargs: Any) -> IO[bytes]:
        stream: IO[bytes] = default_stream_factory(*args, **kwargs)
        opened.append(stream)
        return stream

    parser = FormDataParser(
        stream_factory, silent=False, max_form_parts=MAX_FORM_PARTS, max_form_memory_size=MAX_FORM_FIELD_SIZE
    )
    try:
        _, fields, files = parser.parse(io.BytesIO(body), mimetype, len(body), options)
    except BaseException as exc:
        for stream in opened:  # parts read before the error: their spooled files, closed now
            stream.close()
        if isinstance(exc, RequestEntityTooLarge):
            raise FormTooLarge(
                f"The form has more than {MAX_FORM_PARTS} parts or a field over {MAX_FORM_FIELD_SIZE} bytes."
            ) from None
        raise
    uploads = [
        (name, UploadFile(file.filename, file.content_type, file.stream)) for name, file in files.items(multi=True)
    ]
    return [*fields.items(multi=True), *uploads]
