"""The pipeline wrapper users subclass. Standard library only.

A wrapper file imports this and nothing from a web framework, so the same file serves FastAPI and
Flask alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["BasePipelineWrapper", "SupportsRunApi", "produces", "declared_media_types"]

F = TypeVar("F", bound=Callable[..., Any])

_PRODUCES_ATTRIBUTE = "__dualserve_produces__"


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
