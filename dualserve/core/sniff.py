"""Media types from magic bytes and file names. No web framework.

Magic bytes come from the ``filetype`` package (a signature table, about 2 µs a call); the few
legacy ``x-`` names it reports are mapped to their registered IANA names so both frontends and
every client see one spelling.
"""

from __future__ import annotations

import mimetypes

import filetype

__all__ = ["OCTET_STREAM", "guess_from_bytes", "guess_from_name"]

OCTET_STREAM = "application/octet-stream"

_REGISTERED_NAMES = {
    "image/apng": "image/png",
    "audio/x-wav": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-aiff": "audio/aiff",
    "image/x-icon": "image/vnd.microsoft.icon",
    "application/font-woff": "font/woff",
    "application/font-sfnt": "font/ttf",
}

# The platform's mime.types file varies between machines; these are fixed so that a path is
# served with the same type everywhere.
_EXTENSIONS = {
    ".png": "image/png",
    ".apng": "image/apng",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".ico": "image/vnd.microsoft.icon",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".json": "application/json",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}


# The two signatures most results carry, checked before filetype walks its table (about 20
# matchers, 2 microseconds). APNG is served as image/png either way: its registered type.
_COMMON = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def guess_from_bytes(head: bytes | bytearray | memoryview) -> str | None:
    """The media type announced by the first bytes of ``head``, or ``None``."""
    start = bytes(head[:8])
    for signature, media_type in _COMMON:
        if start.startswith(signature):
            return media_type
    kind = filetype.guess(bytes(head[:8192]))
    if kind is None:
        return None
    mime: str = kind.mime
    return _REGISTERED_NAMES.get(mime, mime)


def guess_from_name(name: str) -> str | None:
    """The media type for a file name's extension, or ``None`` when it has no known one."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed is None:
        return None
    if guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return _REGISTERED_NAMES.get(guessed, guessed)
