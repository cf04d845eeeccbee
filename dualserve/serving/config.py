"""Settings read from the environment, for the factories that servers import by name. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

from ..exceptions import LoadError

__all__ = [
    "API_KEYS_ENV",
    "BROKER_ENV",
    "CORS_ORIGINS_ENV",
    "CACHE_TTL_ENV",
    "DEBUG_ENV",
    "JOB_WORKERS_ENV",
    "MAX_BODY_SIZE_ENV",
    "MAX_IMAGE_PIXELS_ENV",
    "MAX_STREAMS_ENV",
    "PIPELINES_DIR_ENV",
    "RATE_LIMIT_ENV",
    "RESULT_TTL_ENV",
    "S3_REDIRECT_ENV",
    "STATE_DIR_ENV",
    "STORE_ENV",
    "STORE_MAX_BYTES_ENV",
    "THREADS_ENV",
    "TIMEOUT_ENV",
    "Settings",
    "broker",
    "default_state_dir",
    "pipelines_dir",
    "settings",
    "store",
]

PIPELINES_DIR_ENV = "DUALSERVE_PIPELINES_DIR"
DEBUG_ENV = "DUALSERVE_DEBUG"
MAX_BODY_SIZE_ENV = "DUALSERVE_MAX_BODY_SIZE"
TIMEOUT_ENV = "DUALSERVE_TIMEOUT"
THREADS_ENV = "DUALSERVE_THREADS"
MAX_STREAMS_ENV = "DUALSERVE_MAX_STREAMS"
MAX_IMAGE_PIXELS_ENV = "DUALSERVE_MAX_IMAGE_PIXELS"
STATE_DIR_ENV = "DUALSERVE_STATE_DIR"
RESULT_TTL_ENV = "DUALSERVE_RESULT_TTL"
JOB_WORKERS_ENV = "DUALSERVE_JOB_WORKERS"
CACHE_TTL_ENV = "DUALSERVE_CACHE_TTL"
STORE_MAX_BYTES_ENV = "DUALSERVE_STORE_MAX_BYTES"
BROKER_ENV = "DUALSERVE_BROKER"
STORE_ENV = "DUALSERVE_STORE"
S3_REDIRECT_ENV = "DUALSERVE_S3_REDIRECT"
API_KEYS_ENV = "DUALSERVE_API_KEYS"
CORS_ORIGINS_ENV = "DUALSERVE_CORS_ORIGINS"
RATE_LIMIT_ENV = "DUALSERVE_RATE_LIMIT"


class Settings(TypedDict, total=False):
    """The app factories' keyword settings; one left out, or ``None``, takes the default of
    :class:`~dualserve.serving.service.Service`.

    ``debug``: name the exception in 500 answers. ``max_body_size``: the largest request body in
    bytes (64 MiB); larger ones get 413. ``timeout``: seconds a pipeline may take to answer; past
    it, 504 (no limit). ``threads``: sync pipeline runs at once per process, and the Flask mount's
    threads (64). ``max_streams``: streams sent at once per process; one more gets 503 (no limit).
    ``max_image_pixels``: the largest image Pillow decodes or a pipeline returns (64 megapixels);
    an upload over it gets 413. ``cache_ttl``: seconds every pipeline's answers are served from
    the store (only ``@cached`` ones' otherwise). ``broker``, ``store``, ``s3_redirect``: scaled
    out on Celery workers (docs/contract.md section 7): the Redis URL, the shared directory or
    ``s3://BUCKET/PREFIX``, and whether a result on S3 is answered by a 303 to a presigned URL.
    ``cors_origins``, ``api_keys``, ``rate_limit``: the edge (docs/contract.md section 8), each a
    comma-separated list in the environment (the rate as ``limits`` writes it, ``60/minute``).
    """

    debug: bool
    max_body_size: int | None
    timeout: float | None
    threads: int | None
    max_streams: int | None
    max_image_pixels: int | None
    state_dir: str | None
    result_ttl: float | None
    job_workers: int | None
    cache_ttl: float | None
    store_max_bytes: int | None
    broker: str | None
    store: str | None
    s3_redirect: bool
    cors_origins: list[str]
    api_keys: list[str]
    rate_limit: str | None


def default_state_dir() -> Path:
    """Where jobs and stored results live unless told: ``$DUALSERVE_STATE_DIR``, else ``.dualserve``."""
    return Path(os.environ.get(STATE_DIR_ENV) or ".dualserve")


def broker() -> str:
    value = os.environ.get(BROKER_ENV)
    if not value:
        raise LoadError(f"Set {BROKER_ENV} to the Redis URL the workers share (redis://HOST:6379/0).")
    return value


def store() -> str:
    value = os.environ.get(STORE_ENV)
    if not value:
        raise LoadError(f"Set {STORE_ENV} to the results' shared directory or s3://BUCKET/PREFIX.")
    return value


def pipelines_dir() -> Path:
    value = os.environ.get(PIPELINES_DIR_ENV)
    if not value:
        raise LoadError(f"Set {PIPELINES_DIR_ENV} to the directory of your pipeline wrappers.")
    return Path(value)


def settings() -> Settings:
    """The settings the environment sets; the unset ones are left out."""
    found = Settings()
    for key, name in (("debug", DEBUG_ENV), ("s3_redirect", S3_REDIRECT_ENV)):
        if os.environ.get(name, "").lower() in ("1", "true", "yes", "on"):
            found[key] = True  # type: ignore[literal-required]
    for key, name in (("cors_origins", CORS_ORIGINS_ENV), ("api_keys", API_KEYS_ENV)):
        items = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
        if items:
            found[key] = items  # type: ignore[literal-required]
    if os.environ.get(RATE_LIMIT_ENV):
        found["rate_limit"] = os.environ[RATE_LIMIT_ENV]
    if os.environ.get(BROKER_ENV):
        found["broker"] = broker()
        found["store"] = store()
    for key, name in (
        ("max_body_size", MAX_BODY_SIZE_ENV),
        ("threads", THREADS_ENV),
        ("max_streams", MAX_STREAMS_ENV),
        ("max_image_pixels", MAX_IMAGE_PIXELS_ENV),
        ("job_workers", JOB_WORKERS_ENV),
        ("store_max_bytes", STORE_MAX_BYTES_ENV),
    ):
        value = os.environ.get(name)
        if value:
            if not value.isdigit():
                raise LoadError(f"{name} must be a whole number, not {value!r}.")
            found[key] = int(value)  # type: ignore[literal-required]
    for key, name in (("timeout", TIMEOUT_ENV), ("result_ttl", RESULT_TTL_ENV), ("cache_ttl", CACHE_TTL_ENV)):
        value = os.environ.get(name)
        if value:
            try:
                found[key] = float(value)  # type: ignore[literal-required]
            except ValueError:
                raise LoadError(f"{name} must be a number of seconds, not {value!r}.") from None
    return found
