"""Settings read from the environment, for the factories that servers import by name. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import LoadError

__all__ = [
    "DEBUG_ENV",
    "MAX_BODY_SIZE_ENV",
    "PIPELINES_DIR_ENV",
    "TIMEOUT_ENV",
    "debug",
    "max_body_size",
    "pipelines_dir",
    "timeout",
]

PIPELINES_DIR_ENV = "DUALSERVE_PIPELINES_DIR"
DEBUG_ENV = "DUALSERVE_DEBUG"
MAX_BODY_SIZE_ENV = "DUALSERVE_MAX_BODY_SIZE"
TIMEOUT_ENV = "DUALSERVE_TIMEOUT"


def pipelines_dir() -> Path:
    value = os.environ.get(PIPELINES_DIR_ENV)
    if not value:
        raise LoadError(f"Set {PIPELINES_DIR_ENV} to the directory of your pipeline wrappers.")
    return Path(value)


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def max_body_size() -> int | None:
    value = os.environ.get(MAX_BODY_SIZE_ENV)
    if not value:
        return None
    if not value.isdigit():
        raise LoadError(f"{MAX_BODY_SIZE_ENV} must be a number of bytes, not {value!r}.")
    return int(value)


def timeout() -> float | None:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise LoadError(f"{TIMEOUT_ENV} must be a number of seconds, not {value!r}.") from None
