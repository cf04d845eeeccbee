"""Where a request ends: its head and body read as they arrive, before any thread takes it. Sans-IO
but for where the bytes are kept (a :class:`~dualserve.serving.bodies.Spool`: memory, then a temp file).

The gunicorn worker (:mod:`dualserve.servers.gunicorn`) feeds an :class:`IncomingRequest` the
bytes of a connection from its poller, and hands the connection to a thread once it is whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

# gunicorn's own grammar for chunk extensions, so that what passes here passes its parser too.
from gunicorn.http import body as gunicorn_body

from ..core.reply import malformed_detail, too_large_detail
from .bodies import SPOOL_SIZE, Spool

__all__ = [
    "FRAMING_ALLOWANCE",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "MAX_TRAILER_SECTION",
    "ChunkedScanner",
    "Deadlines",
    "FramingError",
    "IncomingRequest",
]

#: The largest request head, in bytes (uvicorn's protocol takes the same): past it, 431.
MAX_HEAD = 65536
#: The longest chunk-size line, extensions included: Go's net/http refuses past 4096 too.
MAX_CHUNK_LINE = 4096
#: The largest trailer section after the last chunk.
MAX_TRAILER_SECTION = 8192
#: Framing (size lines, CRLFs, trailers) a body may carry beyond one byte per byte of data. Go's
#: net/http has a similar rule (CVE-2023-39326): a body of one-byte chunks would otherwise be
#: six times its size, each chunk a turn of the scanner on the poller and of gunicorn's parser.
FRAMING_ALLOWANCE = 16384
_HEX = frozenset(b"0123456789abcdefABCDEF")
# The framing headers, as they appear in a lowercased head: one absent means no slow path.
_FRAMING_NAMES = (b"content-length", b"transfer-encoding", b"expect")


@dataclass(frozen=True)
class Deadlines:
    """How long a request may take to arrive, in seconds: Apache mod_reqtimeout's defaults
    (``header=20-40,MinRate=500 body=20,MinRate=500``). The head gets ``head``, one more second
    for every ``min_rate`` bytes, up to ``head_max``; the body ``body`` from the end of the head,
    one more second for every ``min_rate`` bytes of it."""

    head: float = 20.0
    head_max: float = 40.0
    body: float = 20.0
    min_rate: float = 500.0


class FramingError(Exception):
    """The request cannot be taken as framed: ``status_code`` is 400, 413 or 431."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


def _malformed(reason: str) -> FramingError:
    return FramingError(400, malformed_detail(reason))


def _too_large(limit: int) -> FramingError:
    return FramingError(413, too_large_detail(limit))


# --- sans-IO: where a request ends --------------------------------------------------------------

_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedScanner:
    """Finds where a chunked body ends (RFC 9112 section 7.1), without de-chunking it.

    Feed it the bytes after the head as they arrive; it checks the framing, and the declared sizes
    against ``max_body_size``, before the data of a chunk arrives. A chunk-size line accepted here
    is one gunicorn's parser accepts (the same extension grammar), so both agree on where the
    body ends; gunicorn de-chunks it later, in a thread, from the same bytes.
    """

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        #: Data bytes the chunks have declared so far.
        self.size = 0
        #: Bytes that are not data: size lines, CRLFs, the trailer section.
        self.framing = 0
        self.done = False
        self._state = _SIZE
        self._line = bytearray()
        self._left = 0  # data bytes still to come in this chunk, or CRLF bytes after them
        self._trailers = 0

    def feed(self, data: bytes) -> int | None:
        """Scan ``data``, which follows the bytes fed before. Once the body ends in it, return
        how many of its bytes belong to the body (the rest are the next request's); until then,
        ``None``. Raise :class:`FramingError` (400 or 413) as soon as the framing is wrong."""
        if self.done:
            return 0
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _DATA:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    self._state, self._left = _DATA_END, 2
            elif self._state == _DATA_END:
                if data[pos] != b"\r\n"[2 - self._left]:
                    raise _malformed("a chunk's data is not followed by CRLF")
                pos += 1
                self.framing += 1
                self._left -= 1
                if not self._left:
                    self._state = _SIZE
            else:
                newline = data.find(b"\n", pos)
                stop = end if newline < 0 else newline + 1
                self._line += data[pos:stop]
                self.framing += stop - pos
                pos = stop
                # Past the bound by more than the CRLF still to come (or its LF): too long.
                terminator = 2 if newline >= 0 else 1
                if self._state == _SIZE:
                    if len(self._line) > MAX_CHUNK_LINE + terminator:
                        raise _malformed(f"a chunk-size line is longer than {MAX_CHUNK_LINE} bytes")
                elif self._trailers + len(self._line) > MAX_TRAILER_SECTION + terminator:
                    raise _malformed(f"the trailer section is longer than {MAX_TRAILER_SECTION} bytes")
                if newline < 0:
                    break
                line, self._line = bytes(self._line), bytearray()
                if line[-2:] != b"\r\n":
                    raise _malformed("a line ends in a bare LF")
                if self._state == _SIZE:
                    self._start_chunk(line[:-2])
                elif line == b"\r\n":
                    self.done = True
                    return pos
                else:
                    self._trailers += len(line)
        return None

    def _start_chunk(self, line: bytes) -> None:
        size, semicolon, extension = line.partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")  # RFC 9112: whitespace only before an extension
        if not size or not _HEX.issuperset(size):
            raise _malformed("a chunk size is not a hexadecimal number")
        # gunicorn's grammar for extensions, so that what passes here passes there.
        if semicolon and (b"\r" in extension or not gunicorn_body.CHUNK_EXT_RE.fullmatch(b";" + extension)):
            raise _malformed("a chunk extension is not valid")
        declared = int(size, 16)
        if declared > self.max_body_size - self.size:
            raise _too_large(self.max_body_size)
        self.size += declared
        if self.framing > FRAMING_ALLOWANCE + self.size:
            raise _malformed("its chunks carry more framing than data")
        if declared:
            self._state, self._left = _DATA, declared
        else:
            self._state = _TRAILER


class IncomingRequest:
    """One request's bytes as they arrive, and whether it is whole yet.

    Sans-IO but for where the bytes are kept: a :class:`~dualserve.serving.bodies.Spool` (memory, then a
    temp file).
    Once :attr:`complete`, :meth:`take` gives the request's bytes as received, head and body, and
    :attr:`rest` what came after them: the first bytes of the next request.
    """

    def __init__(
        self, max_body_size: int, max_request_line: int, now: float, deadlines: Deadlines = Deadlines()
    ) -> None:
        self.max_body_size = max_body_size
        self.max_request_line = max_request_line
        self.deadlines = deadlines
        #: When the head's clock started: the connection's accept, or a kept-alive one's first byte.
        self.started = now
        #: Bytes received for this request, head included.
        self.received = 0
        self.complete = False
        #: Handed over before its body arrived (a length over the limit, or a head gunicorn will
        #: refuse from what is in hand): the connection closes after the answer.
        self.cut = False
        #: The client waits for ``100 Continue`` before it sends the body.
        self.wants_continue = False
        self.rest = b""
        self._head = bytearray()
        self._head_done_at: float | None = None
        self._line_checked = False  # the request line was found, within gunicorn's limit
        self._lf_checked = 0  # the head was checked for a bare LF up to here
        self._body_received = 0
        self._length = 0  # Content-Length bytes still to come
        self._chunks: ChunkedScanner | None = None
        self._spool = Spool(SPOOL_SIZE)

    def deadline(self) -> float:
        """When the request must be whole, on the clock ``now`` was read from."""
        limits = self.deadlines
        if self._head_done_at is None:
            return self.started + min(limits.head + self.received / limits.min_rate, limits.head_max)
        return self._head_done_at + limits.body + self._body_received / limits.min_rate

    def feed(self, data: bytes, now: float) -> None:
        """Take the next bytes from the client; raise :class:`FramingError` to refuse the request."""
        if self.complete:
            self.rest += data
            return
        self.received += len(data)
        if self._head_done_at is None:
            data = self._feed_head(data, now)
        if data and not self.complete:
            self._feed_body(data)

    def take(self) -> IO[bytes]:
        """The request's bytes, from its first; the caller closes the file."""
        return self._spool.take()

    def close(self) -> None:
        self._spool.close()

    def _feed_head(self, data: bytes, now: float) -> bytes:
        """Add ``data`` to the head; once the head is whole, return the bytes after it."""
        head = self._head
        searched = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", searched)
        if self._has_bare_lf(end) or self._request_line_too_long():
            # gunicorn refuses these (400, 414) from the bytes in hand: no use waiting for more.
            self._spool.write(head)
            self._head = bytearray()
            self.complete = self.cut = True
            return b""
        if end < 0:
            if len(head) > MAX_HEAD:
                raise FramingError(431, f"The request head is larger than {MAX_HEAD} bytes.")
            return b""
        end += 4
        self._head_done_at = now
        self._head = bytearray()
        self._frame(bytes(head[:end]))
        self._spool.write(head[:end])
        after = bytes(head[end:])
        if not self.complete:
            return after
        if self.cut:
            self._spool.write(after)  # the body's first bytes, never read: the connection closes
        else:
            self.rest = after
        return b""

    def _has_bare_lf(self, end: int) -> bool:
        head = self._head
        stop = len(head) if end < 0 else end + 4
        newline = head.find(b"\n", self._lf_checked, stop)
        while newline >= 0:
            if newline == 0 or head[newline - 1] != 0x0D:
                return True
            newline = head.find(b"\n", newline + 1, stop)
        self._lf_checked = max(self._lf_checked, stop - 1)
        return False

    def _request_line_too_long(self) -> bool:
        limit = self.max_request_line
        if self._line_checked or limit <= 0:
            return False
        start = 2 if self._head.startswith(b"\r\n") else 0  # gunicorn skips one empty line first
        line_end = self._head.find(b"\r\n", start, start + limit + 3)
        if line_end < 0:
            return len(self._head) - start - 2 > limit
        self._line_checked = line_end - start <= limit
        return not self._line_checked

    def _frame(self, head: bytes) -> None:
        """Where the body ends, from the head's framing fields; or hand the request over at once."""
        lowered = head.lower()
        if not any(name in lowered for name in _FRAMING_NAMES):
            self.complete = True  # no body
            return
        lines = lowered.split(b"\r\n")
        if not lines[0]:
            del lines[0]  # gunicorn skips one empty line before the request line
        http11 = lines[0].endswith(b" http/1.1")
        lengths: list[bytes] = []
        codings: list[bytes] = []
        expects: list[bytes] = []
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or line[:1] in b" \t":
                self.complete = self.cut = True  # no colon, or folded: gunicorn refuses the head
                return
            name, value = name.strip(b" \t"), value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.extend(coding.strip(b" \t") for coding in value.split(b","))
            elif name == b"expect":
                expects.append(value)
        if any(expect != b"100-continue" for expect in expects):
            self.complete = self.cut = True  # gunicorn answers 417
        elif codings:
            if lengths or codings[-1] != b"chunked" or codings.count(b"chunked") > 1 or not http11:
                self.complete = self.cut = True  # gunicorn refuses the framing: 400 or 501
                return
            self._chunks = ChunkedScanner(self.max_body_size)
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                self.complete = self.cut = True  # gunicorn refuses the length: 400
                return
            self._length = int(lengths[0])
            if self._length > self.max_body_size:
                self.complete = self.cut = True  # the app answers 413 from the header, unread
            self.complete = self.complete or not self._length
        else:
            self.complete = True
        self.wants_continue = bool(expects) and http11 and not self.complete

    def _feed_body(self, data: bytes) -> None:
        self._body_received += len(data)
        end: int | None
        if self._chunks is not None:
            end = self._chunks.feed(data)
        elif len(data) < self._length:
            end = None
            self._length -= len(data)
        else:
            end, self._length = self._length, 0
        if end is None:
            self._spool.write(data)
            return
        self._spool.write(data[:end])
        self.rest = data[end:]
        self.complete = True
        self.wants_continue = False
