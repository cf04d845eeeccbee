"""``Media``: explicit control over how a result is served. Standard library only."""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MAX_FILENAME_LENGTH", "Media", "safe_filename"]


@dataclass(frozen=True)
class Media:
    """Wrap a result to choose how it is served.

    :param content: bytes, a path, an iterator of bytes or str, or an image (PIL or numpy).
    :param media_type: the ``Content-Type``; when left out it is inferred as for a bare result.
    :param filename: the name offered in ``Content-Disposition``; non-ASCII names are encoded per RFC 5987,
        control characters and path separators become ``_``.
    :param disposition: ``"inline"`` to show in a browser, ``"attachment"`` to download.
    :param headers: extra response headers; they cannot replace the ones the contract decides.
    :param status_code: the status of a full answer (a Range or conditional answer may differ).
    :param max_age: seconds for ``Cache-Control: public, max-age=N``; ``None`` gives ``no-cache``.
    :param delete_after: delete the file at ``content`` once the response is finished or aborted.
    :param format: for images: ``"png"``, ``"jpeg"`` or ``"webp"``.
    :param quality: for lossy image formats, 1 to 100.
    :param root: serve ``content`` (a path or a file name) only if it lies inside this folder; any
        way out (``../``, an absolute path, a symlink) is a JSON 404. See :func:`dualserve.safe_path`.
    """

    content: Any
    media_type: str | None = None
    filename: str | None = None
    disposition: Literal["inline", "attachment"] = "inline"
    headers: Mapping[str, str] = field(default_factory=dict)
    status_code: int = 200
    max_age: int | None = None
    delete_after: bool = False
    format: str | None = None
    quality: int | None = None
    root: str | os.PathLike[str] | None = None

    @classmethod
    def from_base64(cls, data: str | bytes, media_type: str | None = None, **options: Any) -> Media:
        """Binary media from base64, as providers answer (``{"artifacts": [{"base64": ...}]}``).

        A ``data:image/png;base64,...`` URL gives its own media type. Without one, the type is
        sniffed from the decoded bytes, as for any bytes result.

        :param options: any other :class:`Media` field, such as ``filename``.
        """
        text = data.decode("ascii") if isinstance(data, bytes) else data
        if text.startswith("data:"):
            header, _, text = text.partition(",")
            declared = header[5:].split(";", 1)[0]
            media_type = media_type or declared or None
        try:
            content = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"Media.from_base64 got data that is not base64: {exc}") from None
        return cls(content, media_type=media_type, **options)

    def __post_init__(self) -> None:
        if self.disposition not in ("inline", "attachment"):
            raise ValueError(f"Media disposition must be 'inline' or 'attachment', not {self.disposition!r}.")
        if not 200 <= self.status_code <= 599 or self.status_code in (204, 205, 304):
            # 204, 205 and 304 have no body, and servers disagree on what to do with one.
            raise ValueError(f"Media status_code must be from 200 to 599 and allow a body, not {self.status_code}.")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("Media max_age must be zero or more seconds.")
        if self.filename is not None:
            # Names often come from user input: made safe rather than an error.
            object.__setattr__(self, "filename", safe_filename(self.filename))


def safe_filename(name: str) -> str:
    """``name`` as a download may be called: control characters and path separators become ``_``;
    bidi and other invisible format characters and line separators are dropped; surrounding spaces
    go; a name of dots alone (``..``) or of nothing becomes ``download``; a name longer than
    :data:`MAX_FILENAME_LENGTH` characters is cut, its extension kept."""
    # All of Unicode's control characters (C1's NEL too, not only ASCII's), and a bare "." or
    # "..", which a client joining the name to a folder would take for a folder. Format
    # characters (Cf: U+202E turns "gnp.exe" into what reads as "exe.png") and line and paragraph
    # separators (U+2028, U+2029) change how a name is shown without being visible in it.
    kept = (ch for ch in name if unicodedata.category(ch) not in _DROPPED)
    safe = "".join("_" if ch in "/\\" or unicodedata.category(ch) == "Cc" else ch for ch in kept).strip()
    if len(safe) > MAX_FILENAME_LENGTH:
        # Every file system takes 255 bytes; a header of kilobytes of name helps nobody.
        stem, dot, extension = safe.rpartition(".")
        if not dot or not stem or len(extension) > 16:
            stem, extension = safe, ""
        room = MAX_FILENAME_LENGTH - len(dot) - len(extension) if extension else MAX_FILENAME_LENGTH
        safe = stem[:room].rstrip() + (dot + extension if extension else "")
    return safe if safe.strip(".") else "download"


#: The longest download name sent, in characters (UTF-8 file systems take 255 bytes).
MAX_FILENAME_LENGTH = 120
_DROPPED = frozenset({"Cf", "Zl", "Zp"})
