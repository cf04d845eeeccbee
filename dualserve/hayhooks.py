"""What a Hayhooks wrapper imports from ``hayhooks``, for when Hayhooks is not installed.

A wrapper written for Hayhooks starts with ``from hayhooks import BasePipelineWrapper, log``.
When the ``hayhooks`` package is absent, the wrappers dualserve loads get these names from here
instead (:func:`install`): the wrapper then runs unchanged. When Hayhooks is installed, its own
module is used and this one never shadows it.

``log`` takes loguru's ``{}`` arguments, as Hayhooks' does (``log.info("prompt: '{}'", prompt)``):
a standard-library logger given those would print a logging traceback on every call.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

from .wrapper import BasePipelineWrapper as _DualserveWrapper

__all__ = ["BasePipelineWrapper", "install", "log"]


class BasePipelineWrapper(_DualserveWrapper):
    """Hayhooks' base: ``self.pipeline`` starts as ``None``; ``setup()`` and ``run_api`` (or
    ``run_api_async``) are the wrapper's to write."""

    def __init__(self) -> None:
        self.pipeline: Any = None


class _BraceLogger:
    """A logger with loguru's call style: ``{}`` placeholders filled from the arguments."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, message: object, args: tuple[Any, ...], kwargs: dict[str, Any], **extra: Any) -> None:
        if self._logger.isEnabledFor(level):
            # stacklevel 3: the record names the wrapper's line, not this one or the method above.
            self._logger.log(level, "%s", _formatted(message, args, kwargs), stacklevel=3, **extra)

    def trace(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, message, args, kwargs)

    def debug(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, message, args, kwargs)

    def info(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, message, args, kwargs)

    def success(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, message, args, kwargs)

    def warning(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, message, args, kwargs)

    def error(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, message, args, kwargs)

    def critical(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, message, args, kwargs)

    def exception(self, message: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, message, args, kwargs, exc_info=True)

    def bind(self, **extra: Any) -> _BraceLogger:
        return self

    def opt(self, *args: Any, **kwargs: Any) -> _BraceLogger:
        return self


def _formatted(message: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # loguru's style: "{}" placeholders; braces that are not placeholders keep the text as it is.
    try:
        return str(message).format(*args, **kwargs) if args or kwargs else str(message)
    except (IndexError, KeyError, ValueError):
        return " ".join([str(message), *map(str, args)])


#: Hayhooks' ``log``; its records go to the standard library's ``hayhooks`` logger.
log = _BraceLogger(logging.getLogger("hayhooks"))


def __getattr__(name: str) -> Any:
    # Hayhooks has more (chat completion helpers, streaming generators); say what to do about it.
    raise AttributeError(
        f"dualserve stands in for hayhooks.BasePipelineWrapper and hayhooks.log only, not {name!r}; "
        f"pip install hayhooks to use it."
    )


def install() -> None:
    """Make ``import hayhooks`` give this module, unless Hayhooks itself is installed."""
    if "hayhooks" in sys.modules or importlib.util.find_spec("hayhooks") is not None:
        return
    sys.modules["hayhooks"] = sys.modules[__name__]
