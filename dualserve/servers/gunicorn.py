"""A gunicorn worker that gives a thread only to a request that has arrived whole.

gunicorn's ``gthread`` worker waits for a connection's first byte on its poller, then hands the
connection to a pool thread, which reads the head, and the body as the app asks for it, from the
socket. A client that sends slowly holds that thread for as long as it keeps sending: eight
clients trickling their headers stop a worker of eight threads, on both frontends.

:class:`WholeRequestWorker` reads every request on the worker's main poller loop instead, where
a slow client costs a socket and a buffer, never a thread:

- the head, bounded in size (:data:`MAX_HEAD`: past it, ``431``) and in time;
- then the body, by its framing: ``Content-Length`` bytes, or the chunks that
  :class:`~dualserve.serving.framing.ChunkedScanner` finds (a malformed chunk is a ``400``, a
  chunk or a total over the body limit a ``413``, both answered from the poller). Past 1 MiB the
  bytes go to a temporary file (:class:`~dualserve.serving.bodies.Spool`). A declared length over
  the limit is handed over at once, unread: the app answers ``413`` from the header, and the
  connection closes after it.

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
from functools import partial
from selectors import EVENT_READ
from typing import IO, Any

from gunicorn import http, util
from gunicorn.http.message import MAX_REQUEST_LINE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from ..core.reply import wire_error
from ..serving.config import settings
from ..serving.framing import Deadlines, FramingError, IncomingRequest
from ..serving.service import DEFAULT_MAX_BODY_SIZE

__all__ = ["BufferedUnreader", "WholeRequestWorker"]

#: How long a closing connection is drained (so its last answer is not lost to a reset), and how much.
LINGER_TIME = 2.0
LINGER_BYTES = 16 * 1024 * 1024
RECV_SIZE = 256 * 1024
_SWEEP_INTERVAL = 0.25
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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
        data = _receive(conn)
        if data is None:
            return
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
        data = _receive(conn)
        if data is None:
            return
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


def _receive(conn: _Conn) -> bytes | None:
    """What a readable socket has: ``None`` when it would block after all, ``b""`` once it is
    closed or broken."""
    try:
        data: bytes = conn.sock.recv(RECV_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
    return data


def _peer(client: Any) -> str:
    return str(client[0]) if isinstance(client, tuple) and client else str(client)
