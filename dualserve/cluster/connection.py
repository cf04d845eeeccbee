"""What an API process and a worker share: the Redis broker, the job records in it, the blob store.

``--broker redis://HOST:PORT/N`` is Celery's broker and the home of the job records and of the
relayed ``/run`` answers (:mod:`.relay`); ``--store`` is where results live, a directory every
machine mounts or ``s3://BUCKET/PREFIX``. Redis that cannot be reached, or a store that cannot,
is :class:`~dualserve.store.Unavailable`: the service answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import functools
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.reply import Reply
from ..core.request import Request
from ..store import BLOBS_DIR, Blobs, Store, Unavailable
from .relay import Receiver

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from ..core.routes import Route

__all__ = ["ANSWER", "QUEUE", "RUN_JOB", "Cluster"]

#: The Celery queue dualserve's tasks go to, and their names.
QUEUE = "dualserve"
RUN_JOB = "dualserve.run_job"
ANSWER = "dualserve.answer"
#: The request headers that decide a ``/run`` answer (its representation, its body's type, ranges and
#: conditions); a worker sees these, as the core would here. The others are the client's and the proxies'.
RELAYED_HEADERS = (
    "accept",
    "content-type",
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
)
#: Redis keys dualserve writes start with this (the broker's own keys are Celery's).
PREFIX = "dualserve:"
#: A request body up to this size travels inside the task message; a larger one in its own key.
INLINE_BODY = 256 * 1024
#: Seconds Redis holds a message a worker took but has not acknowledged before handing it to
#: another worker: longer than the longest generation (a job is acknowledged when it ends).
VISIBILITY_TIMEOUT = 6 * 3600


class Cluster:
    """The shared parts, for an API process (``role="api"``: it holds no model, ``/run`` and jobs
    go to workers) or a worker (``role="worker"``: it runs them).

    :param broker: the Redis URL.
    :param store: a directory every machine shares, or ``s3://BUCKET/PREFIX``.
    :param state_dir: this machine's own folder (the local copies of S3 blobs, the cache).
    :param s3_redirect: answer a job's result with a 303 to a presigned URL (S3 stores only).
    """

    def __init__(
        self,
        broker: str,
        store: str,
        state_dir: Path,
        role: Literal["api", "worker"] = "api",
        s3_redirect: bool = False,
    ) -> None:
        if not broker.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"The broker must be a Redis URL (redis://HOST:PORT/N), not {broker!r}.")
        self.broker = broker
        self.store_location = store
        self.state_dir = state_dir
        self.role = role
        self.s3_redirect = s3_redirect
        if s3_redirect and not store.startswith("s3://"):
            raise ValueError("--s3-redirect needs an s3://BUCKET/PREFIX store.")

    @functools.cached_property
    def redis(self) -> redis.Redis:
        import redis

        # Short connect timeouts: a Redis that is down is answered as a 503 at once, not after
        # the kernel's minutes; the read timeout stays above the relay's 1 s blocking pops.
        return redis.Redis.from_url(self.broker, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)

    @functools.cached_property
    def celery(self) -> Celery:
        from .app import make_celery

        return make_celery(self.broker)

    def store(self) -> Store:
        """The job records (in Redis) and the blobs (the shared directory or S3)."""
        from ..store.redis_records import RedisRecords

        return Store(self.state_dir, records=RedisRecords(self.redis, PREFIX), blobs=self.blobs())

    def blobs(self) -> Blobs:
        from ..store.s3 import S3Blobs, parse_store

        bucket = parse_store(self.store_location)
        if bucket is None:
            return Blobs(Path(self.store_location) / BLOBS_DIR)
        # The bucket is the truth; this machine keeps copies of what it served, in its own folder.
        return S3Blobs(self.state_dir / "s3-cache", *bucket)

    def send(self, task: str, *args: Any) -> None:
        """Queue ``task`` for the workers; :class:`Unavailable` if the broker cannot take it."""
        from kombu.exceptions import OperationalError

        try:
            self.celery.send_task(
                task,
                args=args,
                queue=QUEUE,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
            )
        except OperationalError as exc:
            raise Unavailable(f"The broker cannot be reached: {exc}") from exc

    def relay(self, pipeline: str, request: Request, route: Route | None, timeout: float | None) -> Reply:
        """Have a worker answer ``/run`` for ``request`` (already validated here) and answer as it does."""
        import redis

        call_id = secrets.token_urlsafe(16)
        message: dict[str, Any] = {
            "pipeline": pipeline,
            "method": request.method,
            "query": request.query_string.decode("latin-1"),
            "headers": _headers(request),
            "path_params": [list(pair) for pair in request.path_params],
            "route": None if route is None else {"methods": route.methods, "json": route.json},
        }
        try:
            if len(request.body) <= INLINE_BODY:
                message["body"] = base64.b64encode(request.body).decode()
            else:
                key = f"{PREFIX}call:{call_id}:body"
                self.redis.set(key, request.body, ex=3600)  # the worker takes it and deletes it
                message["body_key"] = key
            receiver = Receiver(self.redis, PREFIX, call_id)
            self.send(ANSWER, call_id, message)
            return receiver.reply(timeout)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(f"Redis cannot be reached: {exc}") from exc


def _headers(request: Request) -> list[list[str]]:
    """The request headers the core reads to choose and shape the answer, for the worker to read."""
    return [[name, value] for name in RELAYED_HEADERS if (value := request.headers.get(name)) is not None]
