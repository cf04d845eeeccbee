"""``Request``: what the core needs to know of an incoming request. Standard library only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["HeaderLookup", "Request"]


class HeaderLookup(Protocol):
    """Case-insensitive header access; Starlette's ``Headers`` and Werkzeug's ``Headers`` both fit."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Request:
    """A request as every frontend sees it.

    :param method: the upper-case method.
    :param headers: case-insensitive request headers.
    :param query: the query string's pairs, in order.
    :param body: the raw body, for anything but a form.
    :param form: the parsed fields and :class:`~dualserve.UploadFile` parts of a form body.
    :param native: the framework family of the frontend that received it.
    """

    method: str
    headers: HeaderLookup
    query: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    form: Sequence[tuple[str, Any]] | None = None
    #: Whose response objects this frontend can pass through untouched: "starlette" or "werkzeug".
    native: str = ""
