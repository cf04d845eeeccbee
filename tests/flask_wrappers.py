"""Wrappers written the way a Flask endpoint returns images: Response with a mimetype, send_file."""

from __future__ import annotations

import io
from collections.abc import Iterator

from flask import Response, send_file

from dualserve import BasePipelineWrapper
from tests.wrappers import DATA, png_bytes


class MimetypeResponseWrapper(BasePipelineWrapper):
    def run_api(self) -> Response:
        img = png_bytes(7, 7)
        return Response(img, mimetype="image/png")


class SendFileWrapper(BasePipelineWrapper):
    def run_api(self, download: bool = False) -> Response:
        return send_file(
            DATA / "range.bin", mimetype="application/octet-stream", as_attachment=download, download_name="data.bin"
        )


class GeneratorResponseWrapper(BasePipelineWrapper):
    def run_api(self) -> Response:
        def generate() -> Iterator[bytes]:
            yield b"one,"
            yield b"two"

        return Response(generate(), mimetype="text/csv")


class BytesIOResponseWrapper(BasePipelineWrapper):
    """Seed 003's pitfall, the Flask way: a Response over a BytesIO iterates it line by line."""

    def run_api(self) -> Response:
        return Response(io.BytesIO(b"line one\nline two\n" * 500), mimetype="text/plain")


WRAPPERS = {
    "fl_bytesio": BytesIOResponseWrapper,
    "fl_mimetype": MimetypeResponseWrapper,
    "fl_send_file": SendFileWrapper,
    "fl_generator": GeneratorResponseWrapper,
}
