"""Every error dualserve raises on purpose. Standard library only.

Our exception hierarchy::

    DualserveError
    ├── HTTPError          raised by a wrapper: answered with its status and ``{"detail": ...}``
    │   └── RequestError   the request itself is wrong (raised while reading its arguments)
    │       └── ValidationError   422 with the contract's ``detail`` list
    ├── LoadError          a pipeline wrapper could not be imported or set up
    ├── ResolveError       ``run_api`` returned something that cannot become a response (also a TypeError)
    └── Canceled           raised by ``dualserve.progress()`` in a job that was canceled
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Canceled",
    "DualserveError",
    "HTTPError",
    "LoadError",
    "RequestError",
    "ResolveError",
    "ValidationError",
]


class DualserveError(Exception):
    """The root of every error dualserve raises on purpose."""


class HTTPError(DualserveError):
    """Raise in ``run_api`` to answer with ``status_code`` and ``{"detail": detail}``.

    :param status_code: the HTTP status to answer with, 400 to 599.
    :param detail: any JSON-serialisable value; it becomes the body's ``detail``.
    :param headers: extra response headers, such as ``Retry-After``.
    """

    def __init__(self, status_code: int, detail: Any = None, headers: Mapping[str, str] | None = None) -> None:
        if not 400 <= status_code <= 599:
            raise ValueError(f"HTTPError needs a status from 400 to 599, not {status_code}.")
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(status_code, detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class RequestError(HTTPError):
    """The request cannot be served as sent; the core answers it without running the pipeline."""


class ValidationError(RequestError):
    """The arguments do not match ``run_api``'s signature: 422 with a list of problems.

    Each problem has the shape ``{"loc": [...], "msg": "...", "type": "..."}``.
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(422, [dict(error) for error in errors])


class LoadError(DualserveError):
    """A pipeline wrapper failed to import, lacks ``PipelineWrapper``, or its ``setup()`` raised."""


class ResolveError(DualserveError, TypeError):
    """``run_api`` returned a value the return protocol has no answer for."""


class Canceled(DualserveError):
    """Raised by :func:`dualserve.progress` once the job it reports on was canceled
    (``DELETE /jobs/{id}``): a loop that reports progress stops there. Let it propagate."""
