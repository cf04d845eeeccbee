"""Header fields that come from wrapper code: checked before they can reach a server. Standard library only.

A header a server cannot encode (a non-string, a character outside latin-1, a line break) would
fail after the core has answered, as a bare text 500 on one frontend and a different error on
the other; checked here, it fails while the answer can still be the contract's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from ..exceptions import ResolveError

__all__ = ["RESERVED", "checked"]

# These carry what the contract decides (type, length, ranges, validators, disposition).
RESERVED = frozenset(
    {
        "accept-ranges",
        "content-disposition",
        "content-length",
        "content-range",
        "content-type",
        "etag",
        "last-modified",
        "transfer-encoding",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def checked(
    headers: Iterable[tuple[Any, Any]], where: str, reserved: frozenset[str] = RESERVED
) -> Iterator[tuple[str, str]]:
    """Yield ``(name, value)`` pairs that every server can send; raise :class:`ResolveError` otherwise.

    :param where: names the source in the error, such as ``"Media(headers=...)"``.
    """
    for name, value in headers:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ResolveError(f"{where} has a header name that is not a token: {name!r}.")
        if name.lower() in reserved:
            raise ResolveError(f"{where} cannot set {name!r}: use Media's media_type, filename or max_age instead.")
        if not isinstance(value, str):
            raise ResolveError(f"{where}: the value of {name!r} must be a str, not {type(value).__name__}.")
        if any(ch in value for ch in "\r\n\0") or not value.isascii() and not _latin1(value):
            raise ResolveError(f"{where}: the value of {name!r} has a line break or a character outside latin-1.")
        yield name, value


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
