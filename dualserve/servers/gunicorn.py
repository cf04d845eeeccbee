"""A gunicorn worker that gives a thread only to a request that has arrived whole.

gunicorn's ``gthread`` worker waits for a connection's first byte on its poller, then hands the
connection to a pool thread, which reads the head, and the body as the app asks for it, from the
socket. A client that sends slowly holds that thread for as long as it keeps sending: eight
clients trickling their headers stop a worker of eight threads, on both frontends.

:class:`WholeRequestWorker` reads every request on the worker's main poller loop instead, where
a slow client costs a socket and a buffer, never a thread:

- the head, bounded in size (:data:`MAX_HEAD`: past it, ``431``) and in time;
- then the body, by its framing: ``Content-Length`` bytes, or the chunks that
  :class:`ChunkedScanner` finds (a malformed chunk is a ``400``, a chunk or a total over the body
  limit a ``413``, both answered from the poller). Past 1 MiB the bytes go to a temporary file
  (:class:`~dualserve.bridges.Spool`). A declared length over the limit is handed over at once,
  unread: the app answers ``413`` from the header, and the connection closes after it.

Only then does a pool thread take the connection, and gunicorn's own parser reads those bytes
from :class:`BufferedUnreader`: gunicorn still parses the head, de-chunks the body and refuses
what it refuses, and keep-alive and sendfile work as under ``gthread``. A kept-alive connection
returns to the poller, where its next request is read the same way. A request that is not whole
in time is answered ``408`` and closed: like Apache's mod_reqtimeout, the head gets 20 s, one more
for every 500 bytes received, up to 40 s; the body 20 s, one more for every 500 bytes. A connection
that sent nothing is closed silently, after the same 20 s or, kept alive, gunicorn's ``keepalive``.
Closing lingers on the poller too: gthread drained the socket for up to 2 s on its main thread.

gunicorn's own error answers (a request line or header too long, a malformed header) carry the
contract's JSON shape, as every other answer does: :meth:`WholeRequestWorker.handle_error`.

Connections with TLS, the PROXY protocol or HTTP/2 are served as ``gthread`` serves them: the
handshake and preface happen in a thread. Terminate TLS in front of gunicorn for the protection.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass
from functools import partial
from selectors import EVENT_READ
from typing import IO, Any

from gunicorn import http, util
from gunicorn.http import body as gunicorn_body
from gunicorn.http.message import MAX_REQUEST_LINE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from ..core.reply import malformed_detail, too_large_detail, wire_error
from ..serving.bodies import SPOOL_SIZE, Spool
from ..serving.config import settings
from ..serving.service import DEFAULT_MAX_BODY_SIZE

__all__ = [
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "MAX_TRAILER_SECTION",
    "BufferedUnreader",
    "ChunkedScanner",
    "Deadlines",
    "FramingError",
    "IncomingRequest",
    "WholeRequestWorker",
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
#: How long a closing connection is drained (so its last answer is not lost to a reset), and how much.
LINGER_TIME = 2.0
LINGER_BYTES = 16 * 1024 * 1024
RECV_SIZE = 256 * 1024
_SWEEP_INTERVAL = 0.25
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
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

    Sans-IO but for where the bytes are kept: a :class:`~dualserve.bridges.Spool` (memory, then a
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


# --- gunicorn's side ----------------------------------------------------------------------------


class BufferedUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket unreader, serving a request that was read ahead: its bytes, then the
    end of input. The socket is never read in a thread: what follows the request belongs to the
    next one, which the poller reads; a parser that wants more than was framed sees the end."""

    def __init__(self, sock: socket.socket, source: IO[bytes]) -> None:
        super().__init__(sock)
        self.source: IO[bytes] | None = source

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.source is None:
            return b""
        size: int = self.mxchunk
        if size_hint and size_hint > size:
            size = min(size_hint, self.max_body_chunk)
        return self.source.read(size)

    def release(self) -> bool:
        """Close the buffered bytes; say whether the parser left any of them unread."""
        left = bool(self.buf.getvalue())
        if self.source is not None:
            left = left or bool(self.source.read(1))
            self.source.close()
            self.source = None
        return left


class _Conn(TConn):  # type: ignore[misc]
    """A connection, with what the poller knows of the request it is reading."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, ahead: bool) -> None:
        super().__init__(cfg, sock, client, server)
        self.ahead = ahead  # read ahead on the poller (not TLS, PROXY or HTTP/2)
        self.kept_alive = False
        self.incoming: IncomingRequest | None = None
        self.deadline = 0.0
        self.watched = False
        self.closed = False
        self.continued = False  # 100 Continue went out from the poller
        self.cut = False
        self.rest = b""
        self.drained = 0


class _CapturedAnswer:
    """Stands in for the client socket while gunicorn writes its HTML error page: only its status
    is kept. gunicorn's ``handle_error`` knows which status each of its errors gets, and logs it."""

    status_code = 500

    def gettimeout(self) -> float:
        return 0.0  # util.write_nonblock then writes straight to sendall

    def sendall(self, data: bytes) -> None:
        status = data.split(b" ", 2)[1:2]
        if status and status[0].isdigit():
            self.status_code = int(status[0])


class WholeRequestWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's ``gthread`` worker, giving a pool thread only to a request that has arrived
    whole; use it with ``gunicorn -k dualserve.servers.gunicorn.WholeRequestWorker``."""

    #: How long a request may take to arrive; a subclass may set its own.
    deadlines = Deadlines()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        found = settings().get("max_body_size")
        self.max_body_size: int = DEFAULT_MAX_BODY_SIZE if found is None else found
        # As gunicorn's Request reads the setting: 0 is no limit, and none is above its own ceiling.
        limit = self.cfg.limit_request_line
        self.max_request_line: int = MAX_REQUEST_LINE if limit < 0 else min(limit, MAX_REQUEST_LINE)
        self._reading: set[_Conn] = set()
        self._lingering: set[_Conn] = set()
        self._next_sweep = 0.0
        self._stopping_at: float | None = None

    def _reads_ahead(self, client: Any) -> bool:
        cfg = self.cfg
        return bool(
            not cfg.is_ssl
            and cfg.proxy_protocol == "off"
            and getattr(cfg, "protocol", "http") == "http"
            and not negotiation.prior_knowledge_allowed(cfg, client)
            and not negotiation.upgrade_allowed(cfg, client)
        )

    # -- the poller's side: accept, read, hand over, refuse, close --

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        ahead = self._reads_ahead(client)
        conn = _Conn(self.cfg, sock, client, listener.getsockname(), ahead)
        if not ahead:
            self.enqueue_req(conn)  # as gthread does
            return
        self._read_request(conn, b"", idle_until=None)

    def _read_request(self, conn: _Conn, seed: bytes, idle_until: float | None) -> None:
        """Read the connection's next request on the poller, starting with ``seed`` (bytes that
        came behind the last one). ``idle_until``: how long a kept-alive connection may stay silent."""
        conn.incoming = IncomingRequest(self.max_body_size, self.max_request_line, time.monotonic(), self.deadlines)
        conn.kept_alive = idle_until is not None
        conn.continued = conn.cut = False
        conn.rest = b""
        conn.deadline = conn.incoming.deadline() if idle_until is None else idle_until
        if seed and not self._take(conn, seed):
            return
        self._reading.add(conn)
        conn.watched = True
        self.poller.register(conn.sock, EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: _Conn, _sock: object) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)  # the client left before its request was whole: nothing runs
            return
        incoming = conn.incoming
        assert incoming is not None
        if conn.kept_alive and not incoming.received:
            incoming.started = time.monotonic()  # a kept-alive request's head is timed from its first byte
        self._take(conn, data)

    def _take(self, conn: _Conn, data: bytes) -> bool:
        """Feed ``data`` to the request; whether the connection still waits for more."""
        incoming = conn.incoming
        assert incoming is not None
        try:
            incoming.feed(data, time.monotonic())
        except FramingError as refusal:
            self._refuse(conn, refusal.status_code, str(refusal))
            return False
        except Exception:
            # A bug here must cost this connection only, not the poller loop every other one waits on.
            self.log.exception("Error reading a request ahead")
            self._refuse(conn, 500, "Internal Server Error")
            return False
        if incoming.complete:
            self._hand_over(conn)
            return False
        conn.deadline = incoming.deadline()
        if incoming.wants_continue and not conn.continued:
            conn.continued = True
            self._send(conn, _CONTINUE)
        return True

    def _unwatch(self, conn: _Conn) -> None:
        self._reading.discard(conn)
        self._lingering.discard(conn)
        if conn.watched:
            conn.watched = False
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _hand_over(self, conn: _Conn) -> None:
        self._unwatch(conn)
        incoming = conn.incoming
        assert incoming is not None
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader = BufferedUnreader(conn.sock, incoming.take())
        conn.rest, conn.cut = incoming.rest, incoming.cut
        conn.incoming = None
        conn.data_ready = True  # gthread's handle() must not wait for bytes that already came
        self.enqueue_req(conn)

    def _refuse(self, conn: _Conn, status_code: int, detail: str) -> None:
        self.log.warning("Refused a request from %s: %s", _peer(conn.client), detail)
        self._send(conn, wire_error(status_code, detail))
        self._linger(conn)

    def _send(self, conn: _Conn, data: bytes) -> None:
        # A short answer into an empty socket buffer: one non-blocking send. If the client does
        # not read, what did not fit is lost with the connection.
        try:
            conn.sock.send(data)
        except OSError:
            pass

    def _linger(self, conn: _Conn) -> None:
        # RFC 9112 section 9.6: half-close, then read what the client still sends, so the kernel
        # does not answer it with a reset that could take the last answer with it.
        self._unwatch(conn)
        if conn.incoming is not None:
            conn.incoming.close()
            conn.incoming = None
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.drained = 0
        conn.deadline = time.monotonic() + LINGER_TIME
        self._lingering.add(conn)
        conn.watched = True
        self.poller.register(conn.sock, EVENT_READ, partial(self._on_lingering, conn))

    def _on_lingering(self, conn: _Conn, _sock: object) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > LINGER_BYTES:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._unwatch(conn)
        if conn.incoming is not None:
            conn.incoming.close()
            conn.incoming = None
        util.close(conn.sock)
        self.nr_conns -= 1

    def _expire(self, conn: _Conn) -> None:
        incoming = conn.incoming
        if incoming is not None and incoming.received:
            self._refuse(conn, 408, "The request did not arrive in time.")
        else:
            self._close(conn)  # an idle connection: nothing was asked, so nothing is answered

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_INTERVAL
        if not self.alive and self._stopping_at is None:
            self._stopping_at = now
        for conn in [conn for conn in self._reading if conn.deadline <= now or self._idle_at_stop(conn, now)]:
            self._expire(conn)
        for conn in [conn for conn in self._lingering if conn.deadline <= now]:
            self._close(conn)

    def _idle_at_stop(self, conn: _Conn, now: float) -> bool:
        # A stopping worker keeps idle connections briefly, as gthread does, for a request already on its way.
        if self._stopping_at is None or (conn.incoming is not None and conn.incoming.received):
            return False
        return now > self._stopping_at + 2.0

    # -- the pool's side: gthread's, with the request already whole --

    def finish_request(self, conn: Any, fs: Any) -> None:
        if not getattr(conn, "ahead", False):
            super().finish_request(conn, fs)
            return
        try:
            keep = not fs.cancelled() and fs.result() is True
        except BaseException:
            keep = False
        unreader = getattr(conn.parser, "unreader", None)
        if isinstance(unreader, BufferedUnreader) and unreader.release():
            keep = False  # gunicorn framed the request otherwise: where the next one starts is unknown
        try:
            conn.sock.setblocking(False)
        except OSError:
            keep = False
        if keep and not conn.cut:
            self._read_request(conn, conn.rest, idle_until=time.monotonic() + self.cfg.keepalive)
        else:
            self._linger(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "ahead", False):
            if conn.cut:
                req.force_close()  # its body is still on the socket: no next request can be found
            if conn.cut or conn.continued:
                # Sent from the poller already, or not wanted: the app answers 413 from the header.
                req._expected_100_continue = False
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answers to what it refuses, in the contract's JSON shape: gunicorn
        picks the status and logs, as ever; the client gets ``{"detail": ...}`` with the status's
        phrase (gunicorn's page quoted the request back), and never a traceback."""
        captured = _CapturedAnswer()
        super().handle_error(req, captured, addr, exc)
        try:
            util.write_nonblock(client, wire_error(captured.status_code))
        except Exception:
            self.log.debug("Failed to send error message.")


def _peer(client: Any) -> str:
    return str(client[0]) if isinstance(client, tuple) and client else str(client)
