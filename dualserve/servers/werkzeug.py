"""Werkzeug's development server (``dualserve run --server flask``), answering its own errors as JSON.

The standard library's request handler refuses a request line over 64 KiB (414), a header line
over 64 KiB or more than 100 fields (431) and a malformed request line (400) with an HTML page;
here they carry the contract's JSON shape, as every other answer does.
"""

from __future__ import annotations

from werkzeug.serving import WSGIRequestHandler

from ..core.reply import wire_error

__all__ = ["JSONErrorRequestHandler"]


class JSONErrorRequestHandler(WSGIRequestHandler):
    """:class:`WSGIRequestHandler` whose own error answers are ``{"detail": ...}`` JSON."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        # The request line may not have been read, so there is no request version to answer in:
        # HTTP/1.1 is what every client reads.
        self.wfile.write(wire_error(code, message))
