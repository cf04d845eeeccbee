"""Slow and malformed clients on real servers: they hold a socket, never a thread, and what the
servers refuse is refused in the contract's JSON.

gunicorn runs ``dualserve.servers.gunicorn.WholeRequestWorker`` (1 worker, 8 threads), uvicorn
the Flask mount of ``dualserve.bridges``; malformed chunked bodies go to `flask run` too. The
hostile clients are raw sockets. Waits are bounded liveness checks ("answers within 2 s while they
go on"), never speed assertions. The chunk scanner and the request reader are also checked alone,
from tables of edge cases.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from dualserve.servers.gunicorn import WholeRequestWorker
from dualserve.serving.framing import (
    MAX_CHUNK_LINE,
    MAX_HEAD,
    MAX_TRAILER_SECTION,
    ChunkedScanner,
    Deadlines,
    FramingError,
    IncomingRequest,
)
from tests.servers import MOUNTED, Server, dualserve_command, free_port, running

PIPELINES = Path(__file__).parent / "pipelines"
SERVERS = ["gunicorn", "uvicorn"]
LIVENESS = 2.0  # seconds another client may wait for /status while the slow ones go on
GUNICORN_THREADS = 8  # dualserve run's default


@pytest.fixture(scope="module")
def gunicorn() -> Iterator[Server]:
    command, port = dualserve_command(PIPELINES, "gunicorn")
    with running(command, port) as started:
        yield started


@pytest.fixture(scope="module")
def uvicorn() -> Iterator[Server]:
    command, port = dualserve_command(PIPELINES, "uvicorn")
    with running(command, port) as started:
        yield started


@pytest.fixture(scope="module")
def flask() -> Iterator[Server]:
    command, port = dualserve_command(PIPELINES, "flask")
    with running(command, port) as started:
        yield started


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> tuple[str, Server]:
    started: Server = request.getfixturevalue(request.param)
    return request.param, started


# --- raw sockets --------------------------------------------------------------------------------


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_answer(sock: socket.socket, unread: bytearray | None = None) -> tuple[int, dict[str, str], bytes]:
    """Read one answer (after any 100 Continue): status, headers, body by its Content-Length.
    ``unread`` keeps what came after it, the next answer's first bytes, for pipelined requests."""
    data = bytes(unread or b"")
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before an answer: {data[:200]!r}")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        if status_line.split()[1] != "100":
            break
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(data) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    if unread is not None:
        unread[:] = data[length:]
    return int(status_line.split()[1]), headers, data[:length]


def exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is and read the answer (the server may answer before it read all)."""
    with connect(url) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass
        return read_answer(sock)


def head(method: str, path: str, *fields: str) -> bytes:
    return "".join(
        [f"{method} {path} HTTP/1.1\r\nHost: test\r\n", *(f"{field}\r\n" for field in fields), "\r\n"]
    ).encode()


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and detail
    assert b"Traceback" not in body and b"<html" not in body


class Trickle:
    """``count`` connections, each sending ``start`` at once and then ``rest`` ``piece`` bytes
    every ``interval`` seconds, until the block ends. With ``warm_up``, each first completes one
    request on the connection, so the slow one is a kept-alive connection's next request."""

    def __init__(
        self,
        url: str,
        count: int,
        rest: bytes,
        start: bytes = b"",
        piece: int = 1,
        interval: float = 0.5,
        warm_up: bool = False,
    ) -> None:
        self.url, self.count, self.rest, self.start = url, count, rest, start
        self.piece, self.interval, self.warm_up = piece, interval, warm_up
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.sent = 0

    def __enter__(self) -> Trickle:
        for _ in range(self.count):
            sock = connect(self.url)
            self.sockets.append(sock)
            if self.warm_up:
                sock.sendall(head("GET", urlsplit(self.url).path + "/status"))
                assert read_answer(sock)[0] == 200
            if self.start:
                sock.sendall(self.start)
        self._thread.start()
        # Every connection has begun its slow request (under gthread, each now held a thread).
        time.sleep(self.interval * 2)
        return self

    def _run(self) -> None:
        while self.sent < len(self.rest) and not self._stop.is_set():
            piece = self.rest[self.sent : self.sent + self.piece]
            for sock in self.sockets:
                try:
                    sock.send(piece)
                except OSError:
                    pass
            self.sent += len(piece)
            self._stop.wait(self.interval)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def answers_meanwhile(*urls: str) -> None:
    for url in urls:
        response = httpx2.get(url, timeout=LIVENESS)
        assert response.status_code == 200, url


# --- A: slow clients hold no thread -------------------------------------------------------------


@pytest.mark.parametrize("warm_up", [False, True], ids=["new", "kept-alive"])
def test_slow_heads_leave_gunicorn_answering(gunicorn: Server, warm_up: bool) -> None:
    url = gunicorn.url
    slow_head = head("GET", "/status", "X-Slow: " + "s" * 40)
    with Trickle(url, GUNICORN_THREADS + 4, slow_head, warm_up=warm_up) as trickle:
        answers_meanwhile(f"{url}/status", f"{url}/fastapi/status")
        assert trickle.sent < len(slow_head)  # the heads were still arriving
    assert "Traceback" not in gunicorn.log()


def _slow_upload(base: str) -> tuple[bytes, bytes]:
    body = json.dumps({"data": "x" * 1_000_000}).encode()
    start = head(
        "POST", f"{urlsplit(base).path}/echo_size/run", "Content-Type: application/json", f"Content-Length: {len(body)}"
    )
    return start, body


@pytest.mark.parametrize("where", ["root", "mounted"])
def test_slow_bodies_leave_every_frontend_answering(server: tuple[str, Server], where: str) -> None:
    name, started = server
    base = started.url + (MOUNTED[name] if where == "mounted" else "")
    start, body = _slow_upload(base)
    # 64 uploads of 1 MB, 1 KB every half second: the Flask mount under uvicorn has 64 threads.
    with Trickle(base, 64, body, start=start, piece=1024):
        answers_meanwhile(
            f"{started.url}/status",
            f"{started.url}{MOUNTED[name]}/status",
            f"{base}/setup_log/run",  # a sync run: it needs a thread of the frontend being trickled
        )
    assert "Traceback" not in started.log()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("where", ["root", "mounted"])
def test_a_body_sent_in_pieces_arrives_whole(server: tuple[str, Server], where: str, chunked: bool) -> None:
    name, started = server
    base = started.url + (MOUNTED[name] if where == "mounted" else "")
    text = "é" * 30_000
    body = json.dumps({"data": text}).encode()
    if chunked:
        framing = "Transfer-Encoding: chunked"
        pieces = [
            b"%x;piece=%d\r\n%s\r\n" % (len(body[i : i + 7000]), i, body[i : i + 7000])
            for i in range(0, len(body), 7000)
        ]
        wire = b"".join(pieces) + b"0\r\nX-Trailer: yes\r\n\r\n"
    else:
        framing, wire = f"Content-Length: {len(body)}", body
    request = head("POST", f"{urlsplit(base).path}/echo_size/run", "Content-Type: application/json", framing) + wire
    with connect(base) as sock:
        for offset in range(0, len(request), len(request) // 7 + 1):  # eight pieces, split anywhere
            sock.sendall(request[offset : offset + len(request) // 7 + 1])
            time.sleep(0.05)
        status, _, answer = read_answer(sock)
        assert (status, json.loads(answer)) == (
            200,
            {"size": len(text.encode()), "sha256": hashlib.sha256(text.encode()).hexdigest()},
        )
        # The same kept-alive connection serves the next request, sent right behind in one piece
        # with a third (pipelined).
        sock.sendall(head("GET", f"{urlsplit(base).path}/status") * 2)
        unread = bytearray()
        assert read_answer(sock, unread)[0] == 200
        assert read_answer(sock, unread)[0] == 200


def test_expect_100_continue_gets_one_interim_answer(gunicorn: Server) -> None:
    body = b'{"data": "after the interim answer"}'
    with connect(gunicorn.url) as sock:
        sock.sendall(
            head(
                "POST",
                "/echo_size/run",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                "Expect: 100-continue",
            )
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = read_answer(sock)
        assert (status, json.loads(answer)["size"]) == (200, len(b"after the interim answer"))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # no second 100 Continue from gunicorn after the answer


def test_a_declared_length_over_the_limit_is_413_at_once() -> None:
    command, port = dualserve_command(PIPELINES, "gunicorn", "--max-body-size", "1000")
    with running(command, port) as started:
        for prefix in ("", "/fastapi"):
            request = head("POST", f"{prefix}/echo_size/run", "Content-Type: application/json", "Content-Length: 5000")
            status, headers, body = exchange(started.url, request + b"{")  # the rest never comes
            assert_json_error(status, headers, body, 413)
            assert json.loads(body) == {"detail": "The request body is larger than the limit of 1000 bytes."}
            assert headers["connection"] == "close"


# --- B: malformed chunked bodies are 400 JSON, everywhere ---------------------------------------

CHUNKED = {
    "zz size": b"zz\r\nabc\r\n0\r\n\r\n",
    "missing terminator": b"3\r\nabcXY0\r\n\r\n",
    "8 KB extension": b"e;" + b"e" * 8192 + b'\r\n{"data":"abc"}\r\n0\r\n\r\n',
    "100 KB trailer": b'e\r\n{"data":"abc"}\r\n0\r\nX-Trailer: ' + b"t" * 100_000 + b"\r\n\r\n",
}
# httptools, under uvicorn, skips a chunk extension without holding it or calling anyone back, so
# an 8 KB one costs nothing and the body reaches the app intact; uvicorn_protocol.py bounds what
# would cost (trailers, a body that is mostly framing) instead.
UVICORN_TAKES = {"8 KB extension"}


@pytest.mark.parametrize("server", [*SERVERS, "flask"], indirect=True)
@pytest.mark.parametrize("where", ["root", "mounted"])
@pytest.mark.parametrize("case", list(CHUNKED))
def test_a_malformed_chunked_body_is_a_json_400(server: tuple[str, Server], where: str, case: str) -> None:
    name, started = server
    prefix = MOUNTED[name] if where == "mounted" else ""
    start = head("POST", f"{prefix}/echo_size/run", "Content-Type: application/json", "Transfer-Encoding: chunked")
    status, headers, body = exchange(started.url, start + CHUNKED[case])
    if name == "uvicorn" and case in UVICORN_TAKES:
        assert (status, json.loads(body)["size"]) == (200, 3), body  # taken whole, at no cost
    else:
        assert_json_error(status, headers, body, 400)
    assert httpx2.get(f"{started.url}/status", timeout=10).status_code == 200
    assert "Traceback" not in started.log()


@pytest.mark.parametrize("where", ["root", "mounted"])
def test_a_body_of_one_byte_chunks_is_refused(server: tuple[str, Server], where: str) -> None:
    # 600 KB on the wire for 100 KB of data: framing work for nothing (Go's CVE-2023-39326 rule).
    name, started = server
    prefix = MOUNTED[name] if where == "mounted" else ""
    data = b'{"data":"' + b"x" * 100_000 + b'"}'
    chunks = b"".join(b"1\r\n" + data[index : index + 1] + b"\r\n" for index in range(len(data))) + b"0\r\n\r\n"
    start = head("POST", f"{prefix}/echo_size/run", "Content-Type: application/json", "Transfer-Encoding: chunked")
    status, headers, body = exchange(started.url, start + chunks)
    assert_json_error(status, headers, body, 400)
    assert httpx2.get(f"{started.url}/status", timeout=10).status_code == 200


@pytest.mark.parametrize("where", ["root", "mounted"])
def test_a_20_digit_chunk_size_is_refused_at_once(server: tuple[str, Server], where: str) -> None:
    name, started = server
    prefix = MOUNTED[name] if where == "mounted" else ""
    start = head("POST", f"{prefix}/echo_size/run", "Content-Type: application/json", "Transfer-Encoding: chunked")
    with connect(started.url) as sock:
        sock.settimeout(5)  # the body's bytes never come: the answer must not wait for them
        sock.sendall(start + b"FFFFFFFFFFFFFFFFFFFF\r\nabc")
        status, headers, body = read_answer(sock)
    # uvicorn's httptools refuses a size over 64 bits as malformed before any frontend sees it.
    assert_json_error(status, headers, body, 413 if name == "gunicorn" else 400)
    assert "Traceback" not in started.log()


# --- C: gunicorn's own refusals are JSON --------------------------------------------------------

HEADS = {
    "100 KB header": (head("GET", "/status", "X-Big: " + "a" * 100_000), 431),
    "10 KB header": (head("GET", "/status", "X-Big: " + "a" * 10_000), 431),  # refused by gunicorn itself
    "100 KB request line": (head("GET", "/status?" + "q" * 100_000), 414),
    "200 fields": (head("GET", "/status", *(f"X-{index}: 1" for index in range(200))), 431),
    "malformed request line": (b"GET /status HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    "bare LF": (b"GET /status HTTP/1.1\nHost: x\n\n", 400),
    "length and chunked": (head("POST", "/echo_size/run", "Content-Length: 3", "Transfer-Encoding: chunked"), 400),
}


@pytest.mark.parametrize("case", list(HEADS))
def test_gunicorns_refusals_are_json(gunicorn: Server, case: str) -> None:
    request, expected = HEADS[case]
    status, headers, body = exchange(gunicorn.url, request)
    assert_json_error(status, headers, body, expected)
    assert httpx2.get(f"{gunicorn.url}/status", timeout=10).status_code == 200
    assert "Traceback" not in gunicorn.log()


# --- deadlines ----------------------------------------------------------------------------------


class QuickDeadlines(WholeRequestWorker):
    """The worker with one-second deadlines, so a test sees them pass."""

    deadlines = Deadlines(head=1.0, head_max=1.0, body=1.0, min_rate=1e9)


def test_a_request_not_whole_in_time_is_408_and_an_idle_connection_closes() -> None:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        f"{__name__}.QuickDeadlines",
        "dualserve.wsgi:create_app()",
    ]
    env = {"DUALSERVE_PIPELINES_DIR": str(PIPELINES), "PYTHONPATH": str(Path(__file__).parent.parent)}
    with running(command, port, env) as started:
        partial_head = b"GET /status HTTP/1.1\r\nHost: x\r\n"
        partial_body = head("POST", "/echo_size/run", "Content-Type: application/json", "Content-Length: 100") + b"{"
        for request in (partial_head, partial_body):
            with connect(started.url) as sock:
                sock.sendall(request)
                status, headers, body = read_answer(sock)
                assert_json_error(status, headers, body, 408)
        with connect(started.url) as sock:
            assert sock.recv(100) == b""  # closed without a word: nothing was asked
        assert httpx2.get(f"{started.url}/status", timeout=10).status_code == 200


# --- the scanner and the request reader, without a server ---------------------------------------

LIMIT = 1000


@dataclass
class Scan:
    wire: bytes
    ends: bool = False  # the body ends in ``wire``, before ``rest``; else it needs more bytes
    rest: bytes = b""
    status: int | None = None  # or the refusal's status


SCANS = [
    pytest.param(Scan(b"0\r\n\r\n", ends=True), id="empty body"),
    pytest.param(Scan(b"3\r\nabc\r\n0\r\n\r\n", ends=True), id="one chunk"),
    pytest.param(
        Scan(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1", ends=True, rest=b"GET / HTTP/1.1"), id="next request behind"
    ),
    pytest.param(Scan(b"000A\r\n0123456789\r\n0\r\n\r\n", ends=True), id="leading zeros, upper case"),
    pytest.param(Scan(b"3;name=value\r\nabc\r\n0\r\n\r\n", ends=True), id="extension"),
    pytest.param(Scan(b'3 ; a="b c" ;d\r\nabc\r\n0\r\n\r\n', ends=True), id="quoted extension, whitespace"),
    pytest.param(Scan(b"0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n", ends=True), id="trailers"),
    pytest.param(Scan(b"3\r\nab"), id="data to come"),
    pytest.param(Scan(b"3\r\nabc\r"), id="CRLF to come"),
    pytest.param(Scan(b"0\r\nX-Checksum: 1\r\n"), id="trailers to come"),
    pytest.param(Scan(b"3E8\r\n"), id="exactly the limit"),
    pytest.param(Scan(b"zz\r\n", status=400), id="not hexadecimal"),
    pytest.param(Scan(b"\r\n", status=400), id="empty size"),
    pytest.param(Scan(b" 3\r\n", status=400), id="space before the size"),
    pytest.param(Scan(b"3 \r\n", status=400), id="space after the size, no extension"),
    pytest.param(Scan(b"-3\r\n", status=400), id="negative"),
    pytest.param(Scan(b"0x3\r\n", status=400), id="0x prefix"),
    pytest.param(Scan(b"3\r\nabcXY", status=400), id="data not followed by CRLF"),
    pytest.param(Scan(b"3\r\nabc\n", status=400), id="data followed by a bare LF"),
    pytest.param(Scan(b"3\n", status=400), id="size line with a bare LF"),
    pytest.param(Scan(b"0\r\nX: y\n\r\n", status=400), id="trailer with a bare LF"),
    pytest.param(Scan(b"3;\r\n", status=400), id="empty extension"),
    pytest.param(Scan(b"3;a\rb\r\n", status=400), id="bare CR in an extension"),
    pytest.param(Scan(b"3;" + b"a" * MAX_CHUNK_LINE, status=400), id="size line too long, unfinished"),
    pytest.param(Scan(b"0\r\nX: " + b"t" * MAX_TRAILER_SECTION, status=400), id="trailers too long, unfinished"),
    pytest.param(Scan(b"1;" + b"e" * 100 + b"\r\nx\r\n" * 200, status=400), id="more framing than data"),
    pytest.param(Scan(b"F" * 20 + b"\r\n", status=413), id="20 hex digits"),
    pytest.param(Scan(b"3E9\r\n", status=413), id="one over the limit"),
    pytest.param(Scan(b"258\r\n" + b"x" * 600 + b"\r\n258\r\n", status=413), id="total over the limit"),
]


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_chunked_scanner(scan: Scan, split: str) -> None:
    scanner = ChunkedScanner(LIMIT)
    pieces = [scan.wire] if split == "whole" else [scan.wire[i : i + 1] for i in range(len(scan.wire))]
    fed, end = 0, None
    try:
        for piece in pieces:
            found = scanner.feed(piece)
            if found is not None:
                end = fed + found
                break
            fed += len(piece)
    except FramingError as refusal:
        assert refusal.status_code == scan.status, refusal
        assert str(refusal).startswith("The request body is ")
        return
    assert scan.status is None, "not refused"
    assert end == (len(scan.wire) - len(scan.rest) if scan.ends else None)


@dataclass
class Arrival:
    wire: bytes
    complete: bool
    cut: bool = False
    rest: bytes = b""
    status: int | None = None
    wants_continue: bool = False


ARRIVALS = [
    pytest.param(Arrival(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True), id="no body"),
    pytest.param(Arrival(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next", True, rest=b"GET /next"), id="pipelined"),
    pytest.param(Arrival(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", True), id="one empty line first"),
    pytest.param(Arrival(b"GET / HTTP/1.1\r\nHost: x\r\n", False), id="head to come"),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", False), id="length, body to come"),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET", True, rest=b"GET"), id="length"),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\ncontent-length:0\r\n\r\n", True), id="length 0"),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\nab", True, cut=True), id="over the limit"),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", True), id="chunked"
    ),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", True), id="gzip, chunked"
    ),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", True, cut=True),
        id="length and chunked",
    ),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", True, cut=True), id="not chunked last"),
    pytest.param(Arrival(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", True, cut=True), id="chunked 1.0"),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", True, cut=True), id="two lengths"
    ),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", True, cut=True), id="signed length"),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", False, wants_continue=True),
        id="expect 100-continue",
    ),
    pytest.param(Arrival(b"POST / HTTP/1.1\r\nExpect: teapot\r\n\r\n", True, cut=True), id="other expectation"),
    pytest.param(Arrival(b"GET / HTTP/1.1\nHost: x", True, cut=True), id="bare LF"),
    pytest.param(Arrival(b"GET /" + b"q" * 5000, True, cut=True), id="request line over gunicorn's limit"),
    pytest.param(Arrival(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, False, status=431), id="head too large"),
    pytest.param(
        Arrival(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, status=400), id="bad chunk"
    ),
]


@pytest.mark.parametrize("arrival", ARRIVALS)
def test_incoming_request(arrival: Arrival) -> None:
    incoming = IncomingRequest(LIMIT, 4094, now=0.0)
    try:
        incoming.feed(arrival.wire, now=0.0)
    except FramingError as refusal:
        assert refusal.status_code == arrival.status
        return
    finally:
        incoming.close()  # before any assertion fails: a spooled file left open is a warning
    assert arrival.status is None, "not refused"
    assert (incoming.complete, incoming.cut, incoming.rest) == (arrival.complete, arrival.cut, arrival.rest)
    assert incoming.wants_continue == arrival.wants_continue


def test_incoming_request_keeps_the_bytes_as_they_came() -> None:
    wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1f4\r\n" + b"x" * 500 + b"\r\n0\r\n\r\n"
    incoming = IncomingRequest(LIMIT, 4094, now=0.0)
    for offset in range(0, len(wire), 7):
        incoming.feed(wire[offset : offset + 7], now=0.0)
    assert incoming.complete
    assert incoming.take().read() == wire
    incoming.close()


def test_deadlines_follow_the_bytes() -> None:
    incoming = IncomingRequest(LIMIT, 4094, now=100.0)
    assert incoming.deadline() == 120.0
    incoming.feed(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 981, now=101.0)  # 1000 bytes: two more seconds
    assert incoming.deadline() == 122.0
    incoming.feed(b"a" * 50_000, now=102.0)
    assert incoming.deadline() == 140.0  # the head's ceiling
    incoming = IncomingRequest(LIMIT, 4094, now=100.0)
    incoming.feed(b"POST / HTTP/1.1\r\nContent-Length: 900\r\n\r\n" + b"x" * 500, now=105.0)
    assert incoming.deadline() == 126.0  # the body's 20 s from its head, one more for 500 bytes
