"""uvicorn's httptools protocol with a bound on the request head and JSON error answers.

httptools puts no limit on a request line or header: a 50 MB header was read into memory whole
(four at once took the process from 84 to 363 MB and held other requests for seconds). This
protocol counts the head as it arrives and refuses it past :data:`MAX_REQUEST_LINE` (414) or
:data:`MAX_HEAD` bytes or :data:`MAX_FIELDS` fields (431), and answers every request uvicorn
refuses itself (a malformed request line or header, a malformed chunked body) in the contract's
JSON shape instead of text. After a chunked body, trailers over :data:`MAX_TRAILERS` bytes are a
400 (uvicorn appended them to the request's headers, which the app had already been given), and
so is a body that is mostly chunk framing. ``dualserve run`` serves with it; with uvicorn's own command, pass
``--http dualserve.servers.uvicorn:BoundedHttpToolsProtocol``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..core.reply import malformed_detail, wire_error

__all__ = [
    "FRAMING_ALLOWANCE",
    "MAX_FIELDS",
    "MAX_HEAD",
    "MAX_REQUEST_LINE",
    "MAX_TRAILERS",
    "BoundedHttpToolsProtocol",
]

#: The longest request target, in bytes: gunicorn takes 4094, nginx 8 KiB; past it, 414.
MAX_REQUEST_LINE = 8192
#: The whole head, in bytes, and its fields: past either, 431 (gunicorn: 100 fields of 8190 bytes).
MAX_HEAD = 65536
MAX_FIELDS = 100
#: The trailer fields after a chunked body, in bytes: past it, 400 (as the gunicorn worker has it).
MAX_TRAILERS = 8192
#: Chunk framing (size lines, CRLFs, trailers) a body may carry before it must be mostly data:
#: Go's net/http rule against bodies of one-byte chunks (CVE-2023-39326).
FRAMING_ALLOWANCE = 16384


class _Refusal(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a bounded head and JSON errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_size = 0
        self._url_size = 0
        self._fields = 0
        self._in_head = False
        self._in_body = False
        self._trailers = 0
        self._body_seen = 0
        self._framing = 0
        self._refusal: _Refusal | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused and closing: nothing more is parsed
        in_body = self._in_body
        seen = self._body_seen
        super().data_received(data)
        if in_body and self._in_body and self._refusal is None:
            # A read wholly inside a body: what of it was not data was framing. httptools skips
            # chunk extensions without holding them, but a body that is mostly framing is work for
            # nothing; past the allowance it must carry 64 bytes of data per byte of framing.
            self._framing += len(data) - (self._body_seen - seen)
            if self._framing > FRAMING_ALLOWANCE and self._framing * 64 > self._body_seen:
                self._refusal = _Refusal(400, malformed_detail("more chunk framing than data"))
                self.send_400_response("")
                return
        # httptools keeps a header value until it is complete, so its size is known only from the
        # bytes fed while the head was not over: every byte of a chunk after which it still is
        # not over belongs to it (or to the tail of the message before, a bounded overcount).
        if self._in_head and self._refusal is None:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._refusal = _Refusal(431, f"The request head is larger than {MAX_HEAD} bytes.")
                self.send_400_response("")

    def on_message_begin(self) -> None:
        self._head_size = self._url_size = self._fields = 0
        self._in_head = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        # httptools hands the target over as it arrives, so it is checked as it grows.
        self._url_size += len(url)
        if self._url_size > MAX_REQUEST_LINE:
            # Raised inside httptools' callback: the parser stops, and uvicorn calls send_400_response.
            raise self._refuse(414, f"The request target is longer than {MAX_REQUEST_LINE} bytes.")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a trailer field, after a chunked body
            self._trailers += len(name) + len(value) + 4
            if self._trailers > MAX_TRAILERS:
                raise self._refuse(400, malformed_detail(f"trailers over {MAX_TRAILERS} bytes"))
            return  # not a header of the request: the app never sees trailers
        self._fields += 1
        if self._fields > MAX_FIELDS:
            raise self._refuse(431, f"The request has more than {MAX_FIELDS} header fields.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._trailers = self._body_seen = self._framing = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def _refuse(self, status_code: int, detail: str) -> _Refusal:
        self._refusal = _Refusal(status_code, detail)
        return self._refusal

    def send_400_response(self, msg: str) -> None:
        refusal = self._refusal
        if refusal is not None:
            self.logger.warning("Refused a request: %s", refusal)
            answer = wire_error(refusal.status_code, str(refusal))
        else:
            answer = wire_error(400, msg)
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
