"""``dualserve.progress()``: a running job says how far it is, and learns that it was canceled.
Standard library only.

``run_api`` calls ``dualserve.progress(0.4, "denoising")`` as it goes. In a job (``POST
/{name}/jobs``) the fraction and message reach the job JSON and its server-sent events; outside a
job (a plain ``/run``) the call does nothing. Once the job has been canceled, the call raises
:class:`~dualserve.exceptions.Canceled`, so a generation loop stops at its next report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .exceptions import Canceled

__all__ = ["Canceled", "progress", "reporting"]

#: Where the running job's reports go: returns whether the job was canceled.
Reporter = Callable[[float | None, str | None], bool]
_reporter: ContextVar[Reporter | None] = ContextVar("dualserve_progress", default=None)


def progress(fraction: float | None, message: str | None = None) -> None:
    """Report how far the running job is: ``fraction`` from 0 to 1 (None: unknown), and an
    optional short ``message``. A no-op outside a job; raises :class:`Canceled` in a canceled one."""
    report = _reporter.get()
    if report is None:
        return
    if fraction is not None:
        if not isinstance(fraction, (int, float)) or math.isnan(fraction):
            raise TypeError(f"progress() takes a fraction from 0 to 1, not {fraction!r}.")
        fraction = min(1.0, max(0.0, float(fraction)))
    if message is not None:
        message = str(message)[:500]
    if report(fraction, message):
        raise Canceled("The job was canceled.")


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send this context's ``progress()`` calls to ``reporter`` (the job runner's)."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
