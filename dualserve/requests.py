"""``Request``: what the core needs to know of an incoming request. Standard library only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    :param body: the raw body, read in full under the size limit.
    :param native: the framework family of the frontend that received it.
    """

    method: str
    headers: HeaderLookup
    query: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    #: Whose response objects this frontend can pass through untouched: "starlette" or "werkzeug".
    native: str = ""
