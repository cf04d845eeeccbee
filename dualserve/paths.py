"""``safe_path``: a file under a root, from a name a client chose. Standard library only.

``run_api`` often builds a path from a user-supplied name; joined naively, ``../``, an absolute
path, or a symlink leads out of the folder meant to be served. Here every way out is a JSON
404, as if the file did not exist, and a NUL byte is a 400.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import HTTPError

__all__ = ["safe_path"]


def safe_path(root: str | os.PathLike[str], name: str | os.PathLike[str]) -> Path:
    """``root / name``, resolved, if it stays inside ``root`` (symlinks followed).

    :param root: the folder files may be served from.
    :param name: the file's name or relative path, as the client gave it.
    :raises HTTPError: 400 for a NUL byte; 404 for a name that leaves ``root``.
    """
    text = os.fspath(name)
    if "\0" in text:
        raise HTTPError(400, "A file name cannot contain a NUL byte.")
    base = Path(root).resolve()
    candidate = Path(text) if os.path.isabs(text) else base / text
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise HTTPError(404, "File not found.") from None
    if not text or not resolved.is_relative_to(base) or resolved == base:
        raise HTTPError(404, "File not found.")
    return resolved
