"""The pipeline wrapper users subclass. Standard library only.

A wrapper file imports this and nothing from a web framework, so the same file serves FastAPI and
Flask alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["BasePipelineWrapper", "SupportsRunApi", "cached", "declared_cache_ttl", "declared_media_types", "produces"]

F = TypeVar("F", bound=Callable[..., Any])

_PRODUCES_ATTRIBUTE = "__dualserve_produces__"
_CACHED_ATTRIBUTE = "__dualserve_cached__"


@runtime_checkable
class SupportsRunApi(Protocol):
    """Anything with a ``run_api`` method can be served; subclassing the base is optional."""

    def run_api(self, *args: Any, **kwargs: Any) -> Any: ...


class BasePipelineWrapper:
    """Subclass this as ``PipelineWrapper`` in a ``pipeline_wrapper.py``.

    Override :meth:`setup` to load models once per process, and implement ``run_api`` (``def`` or
    ``async def``; Hayhooks' ``run_api_async`` name is accepted too). Its parameters, typed with
    ordinary annotations, become the request schema; its return value is served by the neutral
    return protocol: bytes, a path, an iterator, an image, a :class:`~dualserve.Media`, or JSON.
    """

    def setup(self) -> Awaitable[None] | None:
        """Load what every request needs. Called once per process, before the first request.

        May be ``async def``: it then runs on the loop that runs every async ``run_api``.
        """
        return None

    def run_api(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("The 'run_api' method must be implemented by the PipelineWrapper.")


def produces(*media_types: str) -> Callable[[F], F]:
    """Declare the media types ``run_api`` returns.

    The first one is used when a result does not carry its own type (bytes and streams); all of
    them are listed in the OpenAPI document.

    :param media_types: one or more media types such as ``"image/png"``.
    """
    if not media_types or not all(isinstance(media_type, str) and "/" in media_type for media_type in media_types):
        raise ValueError("produces() needs one or more media types such as 'image/png'.")

    def decorate(function: F) -> F:
        setattr(function, _PRODUCES_ATTRIBUTE, tuple(media_types))
        return function

    return decorate


def declared_media_types(function: Callable[..., Any]) -> tuple[str, ...]:
    """The media types given to :func:`produces` on ``function``, or ``()``."""
    media_types: tuple[str, ...] = getattr(function, _PRODUCES_ATTRIBUTE, ())
    return media_types


def cached(ttl: float) -> Callable[[F], F]:
    """Answer ``run_api`` from the result store for ``ttl`` seconds.

    A ``/run`` with the same validated arguments (an upload by its content) and the same
    representation (``Accept``, ``?format=``, ``?index=``) gets the stored answer: the same bytes
    and ETag, with ``Age``; HEAD, 304 and Range never run the pipeline. Concurrent identical
    requests run it once, across the server's worker processes too. Only 2xx answers are stored;
    a stream is read to its end and stored whole before it is sent. Wins over ``--cache-ttl``.

    :param ttl: seconds an answer is kept, above 0, such as ``cached(ttl=3600)``.
    """
    if callable(ttl):
        raise TypeError("cached needs its lifetime: write @cached(ttl=SECONDS), not @cached.")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < float("inf"):
        raise ValueError(f"cached() needs ttl, a number of seconds above 0, such as cached(ttl=3600); got {ttl!r}.")

    def decorate(function: F) -> F:
        setattr(function, _CACHED_ATTRIBUTE, float(ttl))
        return function

    return decorate


def declared_cache_ttl(function: Callable[..., Any]) -> float | None:
    """The ttl given to :func:`cached` on ``function``, or ``None``."""
    ttl: float | None = getattr(function, _CACHED_ATTRIBUTE, None)
    return ttl
