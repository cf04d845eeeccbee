"""A ``/run`` answer made on a worker and sent by the API process that was asked, through Redis.

The worker pushes frames onto one Redis list per call, the API process pops them and sends them
on as they come, so a stream's chunks reach the client as they are produced:

- ``K``: the worker is alive (every couple of seconds while nothing else is sent);
- ``H`` + JSON: the status and every header, decided by the core on the worker;
- ``C`` + bytes: a piece of the body; ``E``: the end; ``X`` + text: the worker failed mid-answer.

The worker stops pushing while the list holds more than :data:`HIGH_WATER` frames (a slow client
slows the worker, not Redis's memory), and stops for good once the API process marks the call
gone (the client left). A call is never answered twice: the worker marks the head sent, and a
delivery of the same call after a crash (Celery's late acknowledgement) that finds that mark
answers ``X`` instead of running again, so a client never gets two runs spliced together.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from ..core.reply import FileBody, Reply, StreamBody, error_reply
from ..core.streams import close_iterator
from ..serving.aio import portal

if TYPE_CHECKING:
    import redis

__all__ = ["ALIVE_EVERY", "CHUNK_SIZE", "HIGH_WATER", "STALE_AFTER", "Receiver", "Sender", "WorkerLost"]

logger = logging.getLogger("dualserve")

#: Seconds between the worker's "alive" frames, and how long a silent worker is trusted.
ALIVE_EVERY = 2.0
STALE_AFTER = 30.0
#: Frames the list may hold before the worker waits for the API process to take some.
HIGH_WATER = 16
#: The largest piece of a body in one frame.
CHUNK_SIZE = 1024 * 1024
#: Seconds a call's keys outlive their last use (a crashed API process leaves nothing for long).
KEY_TTL = 300


class WorkerLost(Exception):
    """The worker stopped in the middle of an answer whose head was already sent."""


def _keys(prefix: str, call_id: str) -> tuple[str, str, str]:
    base = f"{prefix}call:{call_id}"
    return f"{base}:frames", f"{base}:sent", f"{base}:gone"


class Sender:
    """The worker's side of one call."""

    def __init__(self, client: redis.Redis, prefix: str, call_id: str) -> None:
        self.client = client
        self.frames, self.sent, self.gone = _keys(prefix, call_id)
        self._last_push = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()

    def answered_before(self) -> bool:
        """Whether an earlier delivery of this call already sent its head (then it fails here)."""
        return bool(self.client.exists(self.sent))

    def keep_alive(self) -> threading.Thread:
        """Push ``K`` while the call runs and nothing else is sent; stops at :meth:`finish`."""

        def beat() -> None:
            while not self._done.wait(ALIVE_EVERY / 2):
                if time.monotonic() - self._last_push >= ALIVE_EVERY:
                    try:
                        self._push(b"K")
                    except Exception:
                        logger.warning("Could not tell the API process this worker is alive", exc_info=True)

        thread = threading.Thread(target=beat, name="dualserve-relay-alive", daemon=True)
        thread.start()
        return thread

    def send(self, reply: Reply) -> None:
        """Send ``reply`` whole (its head, then its body as it comes), then close it."""
        try:
            self.client.set(self.sent, b"1", ex=KEY_TTL)
            head = {"status": reply.status_code, "headers": reply.headers}
            self._push(b"H" + json.dumps(head).encode())
            for piece in _pieces(reply):
                if not self._push(b"C" + piece):
                    logger.info("The client left; the rest of the answer is not made")
                    return
            self._push(b"E")
        finally:
            self.finish()
            reply.close()

    def fail(self, detail: str) -> None:
        self._push(b"X" + detail.encode())
        self.finish()

    def finish(self) -> None:
        self._done.set()

    def _push(self, frame: bytes) -> bool:
        """Push one frame; False once the API process has marked the call gone."""
        with self._lock:
            # One round trip a frame: the push, its key's lifetime, and whether the client left.
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(self.frames, frame)
            pipe.expire(self.frames, KEY_TTL)
            pipe.exists(self.gone)
            length, _, gone = pipe.execute()
            self._last_push = time.monotonic()
        waited = time.monotonic()
        while length > HIGH_WATER and not gone:  # the client reads slower than the worker makes
            if time.monotonic() - waited > STALE_AFTER * 2:
                raise WorkerLost("The API process stopped taking the answer.")
            time.sleep(0.005)
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.frames)
            pipe.exists(self.gone)
            length, gone = pipe.execute()
        return not gone


class Receiver:
    """The API process's side of one call: the head, then the body's pieces."""

    def __init__(self, client: redis.Redis, prefix: str, call_id: str) -> None:
        self.client = client
        self.frames, self.sent, self.gone = _keys(prefix, call_id)
        self._heard = 0.0  # when the worker last pushed anything (0: not yet picked up)
        self._ended = False

    def reply(self, timeout: float | None) -> Reply:
        """Wait for the head (at most ``timeout`` seconds, else a 504) and answer with the body to come."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                frame = self._next(deadline)
            except WorkerLost as exc:
                self.close()
                return error_reply(503, f"{exc} Try again.", [("retry-after", "1")])
            if frame is None:
                self.close()
                return error_reply(504, f"The pipeline did not answer within {timeout:g} seconds.")
            kind, data = frame[:1], frame[1:]
            if kind == b"H":
                head = json.loads(data)
                headers = [(name, value) for name, value in head["headers"]]
                return Reply(head["status"], headers, StreamBody(self._body()), cleanups=[self.close])
            if kind == b"X":
                self.close()
                return error_reply(503, data.decode(), [("retry-after", "1")])

    def close(self) -> None:
        """The answer is over, or the client left: the worker stops, nothing stays in Redis."""
        if self._ended:
            return
        self._ended = True
        pipe = self.client.pipeline()
        pipe.set(self.gone, b"1", ex=KEY_TTL)
        pipe.delete(self.frames)
        pipe.execute()

    def _body(self) -> Iterator[bytes]:
        try:
            while True:
                frame = self._next(None)
                assert frame is not None  # no deadline: a frame, or WorkerLost
                kind, data = frame[:1], frame[1:]
                if kind == b"C":
                    yield data
                elif kind == b"E":
                    return
                elif kind == b"X":
                    raise WorkerLost(data.decode())
                # b"H" again cannot come (see the module docstring); b"K" only says "alive".
        finally:
            self.close()

    def _next(self, deadline: float | None) -> bytes | None:
        """The next frame other than ``K``; None at ``deadline``; WorkerLost after a long silence
        from a worker that had picked the call up (its machine is gone)."""
        while True:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                return None
            popped = self.client.blpop([self.frames], timeout=max(wait, 0.01))
            now = time.monotonic()
            if popped is None:
                if self._heard and now - self._heard > STALE_AFTER:
                    raise WorkerLost("The worker running this call stopped answering.")
                continue
            self._heard = now
            frame = cast(bytes, popped[1])  # the client does not decode responses
            if frame != b"K":
                return frame


def _pieces(reply: Reply) -> Iterator[bytes]:
    body = reply.body
    if isinstance(body, bytes):
        for start in range(0, len(body), CHUNK_SIZE):
            yield body[start : start + CHUNK_SIZE]
    elif isinstance(body, FileBody):
        with body.path.open("rb") as file:
            file.seek(body.start)
            left = body.length
            while left > 0:
                piece = file.read(min(CHUNK_SIZE, left))
                if not piece:
                    break
                left -= len(piece)
                yield piece
    else:
        assert isinstance(body, StreamBody)
        chunks = body.chunks
        iterator = chunks if isinstance(chunks, Iterator) else portal.iterate(chunks)
        try:
            yield from iterator
        finally:
            close_iterator(iterator)
