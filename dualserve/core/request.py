"""``Request``: what the core needs to know of an incoming request. Standard library only."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

__all__ = ["HeaderLookup", "Request"]


class HeaderLookup(Protocol):
    """Case-insensitive header access; Starlette's ``Headers`` and Werkzeug's ``Headers`` both fit."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Request:
    """A request as every frontend sees it.

    :param method: the upper-case method.
    :param headers: case-insensitive request headers.
    :param query_string: the raw query string, as the server received it.
    :param body: the raw body, read in full under the size limit.
    :param framework: whose response objects the frontend that received it can pass through.
    """

    method: str
    headers: HeaderLookup
    query_string: bytes = b""
    body: bytes = b""
    #: Whose response objects this frontend can pass through untouched: "starlette" or "werkzeug".
    framework: str = ""
    #: Values from the route's own path, for a pipeline served at a path of its own (any method).
    path_params: Sequence[tuple[str, str]] = ()
    #: The path as the client asked for it (for the access log and spans), and the client's
    #: address as the server saw it (rate limits without a key); empty where nobody asked.
    path: str = ""
    client: str = ""

    @functools.cached_property
    def query(self) -> Sequence[tuple[str, str]]:
        """The query string's pairs, in order, decoded once here for every frontend.

        Starlette and Werkzeug decode differently (``%FF`` was U+FFFD on one and ``%FF`` on the
        other); here raw bytes and escapes are both UTF-8, and what is not UTF-8 becomes U+FFFD.
        """
        if not self.query_string:
            return ()
        return parse_qsl(self.query_string.decode("utf-8", "replace"), keep_blank_values=True, errors="replace")
