"""Parity: replay requests against two servers and report every difference. No web framework.

For migrations: run the legacy app and the migrated one side by side, replay the same cases
against both, and see any difference in status, the headers that matter, or the body::

    dualserve parity --a http://127.0.0.1:5000 --b http://127.0.0.1:1416 --cases cases.json

In tests, ``assert_parity(a, b, cases)`` fails with the same report. ``cases.json`` is a list of
``{"method": "GET", "path": "/cat.png", "headers": {...}, "json": {...}}`` (method, headers and
json optional). Headers are compared by meaning: ``Content-Type`` and ``Content-Disposition`` are
parsed first, so ``inline; filename=cat.png`` equals ``inline; filename="cat.png"``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import httpx2

__all__ = ["DEFAULT_HEADERS", "Case", "assert_parity", "compare", "load_cases"]

#: Compared unless told otherwise: what a client's code reads. Validators (ETag, Last-Modified)
#: and caching headers legitimately differ between implementations and are left out by default.
DEFAULT_HEADERS = ("content-type", "content-disposition", "content-length")


@dataclass(frozen=True)
class Case:
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def label(self) -> str:
        return f"{self.method} {self.path}"


def load_cases(path: str | Path) -> list[Case]:
    return [Case(**item) for item in json.loads(Path(path).read_text())]


def compare(
    a: str, b: str, cases: Iterable[Case], headers: Sequence[str] = DEFAULT_HEADERS, timeout: float = 60.0
) -> list[str]:
    """Every difference between the answers of servers ``a`` and ``b``, one line each."""
    differences: list[str] = []
    with httpx2.Client(timeout=timeout) as client:
        for case in cases:
            answers = [_answer(client, base, case) for base in (a, b)]
            (status_a, headers_a, body_a), (status_b, headers_b, body_b) = answers
            if status_a != status_b:
                differences.append(f"{case.label()}: status {status_a} != {status_b}")
            for name in headers:
                left, right = _normal(name, headers_a.get(name)), _normal(name, headers_b.get(name))
                if left != right:
                    differences.append(f"{case.label()}: {name} {headers_a.get(name)!r} != {headers_b.get(name)!r}")
            if body_a != body_b:
                differences.append(
                    f"{case.label()}: body {len(body_a)} bytes sha256 {_digest(body_a)} != "
                    f"{len(body_b)} bytes sha256 {_digest(body_b)}"
                )
    return differences


def assert_parity(a: str, b: str, cases: Iterable[Case], headers: Sequence[str] = DEFAULT_HEADERS) -> None:
    """For pytest: fail with every difference listed."""
    differences = compare(a, b, cases, headers)
    assert not differences, "The two servers differ:\n" + "\n".join(differences)


def _answer(client: httpx2.Client, base: str, case: Case) -> tuple[int, httpx2.Headers, bytes]:
    options: dict[str, Any] = {"headers": case.headers}
    if case.json is not None:
        options["json"] = case.json
    response = client.request(case.method, base.rstrip("/") + case.path, **options)
    return response.status_code, response.headers, response.content


def _normal(name: str, value: str | None) -> Any:
    if value is None or name not in ("content-type", "content-disposition"):
        return value
    message = Message()
    message[name] = value
    if name == "content-type":
        return message.get_content_type(), {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_disposition(), message.get_filename()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]
