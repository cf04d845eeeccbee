"""Parity: replay requests against two servers and report every difference, breaking or additive. No web framework.

For migrations: run the legacy app and the migrated one side by side, replay the same cases
against both, and see every difference in status, the headers that matter, or the body::

    dualserve parity --a http://127.0.0.1:5000 --b http://127.0.0.1:1416 --cases cases.json

Each difference is one line, ``breaking:`` or ``additive:``. The command exits 1 when any is
breaking (``--strict``: when any differs at all); ``assert_parity(a, b, cases)`` fails the same way
in a test (``strict=True`` for any difference). ``cases.json`` is a list of
``{"method": "GET", "path": "/cat.png", "headers": {...}, "json": {...}}`` (method, headers and
json optional).

What is compared, ``a`` being the reference (the legacy app) and ``b`` the new one:

- the status;
- the headers in ``headers`` (default :data:`DEFAULT_HEADERS`: ``Content-Type``,
  ``Content-Disposition``, ``Content-Length``), by meaning: ``Content-Type`` and
  ``Content-Disposition`` are parsed first (``inline; filename=cat.png`` equals
  ``inline; filename="cat.png"``), ``Allow`` is a set;
- the body, byte for byte;
- for answers that are not errors, whether the validators and range support a client can use
  (:data:`ADDITIVE_HEADERS`: ``Accept-Ranges``, ``ETag``, ``Last-Modified``) are there; their
  values legitimately differ between implementations and are not compared.

A difference is **additive** when no client of ``a`` can be hurt by it, in one of these cases, and
**breaking** otherwise:

1. The request sent ``Range``, and ``a`` answered 200 where ``b`` answers 206 (the range is
   honoured: the client asked for it), or ``a`` answered 416 where ``b`` answers 200 or 206 (a
   range ``a`` refused, such as a multi-range request, is served; RFC 9110 lets a server answer
   200 to any Range).
2. The request sent ``If-None-Match`` or ``If-Modified-Since``, and ``a`` answered 200 where ``b``
   answers 304 (the client asked for it).
3. ``a`` failed with a 500 where ``b`` answers a 4xx: the legacy app crashed on the client's
   input (``?size=abc``), the new one names the mistake (a 422). Nobody relies on a crash.
4. Both answer the same error status (4xx or 5xx), ``a`` with an HTML page (Werkzeug's
   default) and ``b`` with JSON (``{"detail": ...}``, the contract's errors): the status is what
   a client reads of an error page, and a JSON error is an addition.
5. ``b`` sends one of :data:`ADDITIVE_HEADERS` that ``a`` does not (an ETag, ``Accept-Ranges``).

Under rules 1 to 4 the body, ``Content-Length`` and ``Content-Range`` follow from the new status,
and so does ``Content-Type`` unless both statuses are 200 or 206 (a range of a PNG is still a
PNG); those follow-on differences are named in the additive line, not reported as breaking.
Everything else is breaking: another status (a 404 that became a 422, a 200 that became a 405;
the body and compared headers that differ with it are named in its line), another body or
compared header, a validator ``a`` sent and ``b`` does not, a request ``b`` dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, NamedTuple

import httpx2

__all__ = [
    "ADDITIVE_HEADERS",
    "DEFAULT_HEADERS",
    "Answer",
    "Case",
    "Difference",
    "assert_parity",
    "classify",
    "compare",
    "load_cases",
]

#: Compared unless told otherwise: what a client's code reads. Validators (ETag, Last-Modified)
#: and caching headers legitimately differ between implementations and are left out by default.
DEFAULT_HEADERS = ("content-type", "content-disposition", "content-length")
#: Headers that give a client something (validators, ranges): ``b`` adding one is additive, ``b``
#: dropping one is breaking; their values are not compared unless named in ``headers``.
ADDITIVE_HEADERS = ("accept-ranges", "etag", "last-modified")

_RANGE_STATUSES = frozenset({200, 206})


@dataclass(frozen=True)
class Case:
    """One request to replay: ``path`` (with its query string), the method, headers, a JSON body."""

    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def label(self) -> str:
        shown = "".join(f" [{name}: {value}]" for name, value in self.headers.items())
        return f"{self.method} {self.path}{shown}"


class Answer(NamedTuple):
    """What a server answered to a case."""

    status: int
    headers: httpx2.Headers
    body: bytes


@dataclass(frozen=True)
class Difference:
    """One difference between the two answers to ``case``."""

    case: Case
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'breaking' if self.breaking else 'additive'}: {self.case.label()}: {self.what}"


def load_cases(path: str | Path) -> list[Case]:
    return [Case(**item) for item in json.loads(Path(path).read_text())]


def compare(
    a: str, b: str, cases: Iterable[Case], headers: Sequence[str] = DEFAULT_HEADERS, timeout: float = 60.0
) -> list[Difference]:
    """Every difference between the answers of servers ``a`` (the reference) and ``b``, in case order.

    Each request has a connection of its own, so no case sees what an earlier one left behind (a
    server that closed the connection after a crash). A server that cannot be reached at all
    raises ``httpx2.ConnectError``; one that drops a request is a breaking difference for that case.
    """
    differences: list[Difference] = []
    with httpx2.Client(timeout=timeout, limits=httpx2.Limits(max_keepalive_connections=0)) as client:
        for case in cases:
            answers = []
            for side, base in (("a", a), ("b", b)):
                try:
                    answers.append(_answer(client, base, case))
                except httpx2.ConnectError:
                    raise
                except httpx2.TransportError as exc:
                    what = f"no answer from {side}: {type(exc).__name__}: {exc}"
                    differences.append(Difference(case, what, breaking=True))
            if len(answers) == 2:
                differences += classify(case, answers[0], answers[1], headers)
    return differences


def classify(case: Case, a: Answer, b: Answer, headers: Sequence[str] = DEFAULT_HEADERS) -> list[Difference]:
    """The differences between two answers to ``case``, each breaking or additive (rules in the module docstring)."""
    found: list[Difference] = []
    # What follows from a change of status or error body: named in its line, not reported on its own.
    follows: set[str] = set()
    change: Difference | None = None
    if a.status != b.status:
        gain = _status_gain(case, a.status, b.status)
        if gain is None:
            change = Difference(case, f"status {a.status} != {b.status}", breaking=True)
            follows = {"body", *headers}
        else:
            change = Difference(case, f"status {a.status} -> {b.status}: {gain}", breaking=False)
            follows = {"body", "content-length", "content-range"}
            if not {a.status, b.status} <= _RANGE_STATUSES:
                follows |= {"content-type", "content-disposition"}
    elif a.status >= 400 and _media_type(a) == "text/html" and _media_type(b) == "application/json":
        change = Difference(case, f"error {a.status}: a JSON body instead of an HTML page", breaking=False)
        follows = {"body", "content-type", "content-length"}

    followed: list[str] = []
    for name in headers:
        left, right = a.headers.get(name), b.headers.get(name)
        if _normal(name, left) == _normal(name, right):
            continue
        if name in follows:
            followed.append(name)
        else:
            found.append(Difference(case, f"{name} {left!r} != {right!r}", breaking=True))
    if a.body != b.body:
        if "body" in follows:
            followed.append("the body")
        else:
            body = f"body {_describe(a.body)} != {_describe(b.body)}"
            found.append(Difference(case, body, breaking=True))
    if change is not None:
        what = change.what + (f" ({', '.join(followed)} follow)" if followed else "")
        found.insert(0, dataclasses.replace(change, what=what))

    if a.status < 400 and b.status < 400:
        extra = [name for name in ADDITIVE_HEADERS if name not in headers]
        gained = [name for name in extra if name in b.headers and name not in a.headers]
        lost = [name for name in extra if name in a.headers and name not in b.headers]
        if lost:
            found.append(Difference(case, f"drops {', '.join(lost)}", breaking=True))
        if gained:
            found.append(Difference(case, f"adds {', '.join(gained)}", breaking=False))
    return found


def assert_parity(
    a: str, b: str, cases: Iterable[Case], headers: Sequence[str] = DEFAULT_HEADERS, strict: bool = False
) -> list[Difference]:
    """For pytest: fail, listing every difference, when one is breaking (``strict``: when any
    differs). Returns the differences, so a test can check the additive ones too."""
    differences = compare(a, b, cases, headers)
    failing = differences if strict else [difference for difference in differences if difference.breaking]
    assert not failing, "The two servers differ:\n" + "\n".join(map(str, differences))
    return differences


def _status_gain(case: Case, a: int, b: int) -> str | None:
    """Why status ``b`` where ``a`` was is additive, or None (breaking)."""
    sent = {name.lower() for name in case.headers}
    if "range" in sent:
        if (a, b) == (200, 206):
            return "the Range is honoured"
        if a == 416 and b in _RANGE_STATUSES:
            return "a range the reference refused is served" + (" whole" if b == 200 else "")
    if sent & {"if-none-match", "if-modified-since"} and (a, b) == (200, 304):
        return "the conditional request is honoured"
    if a == 500 and 400 <= b < 500:
        return "the reference crashed; the client's mistake is named"
    return None


def _answer(client: httpx2.Client, base: str, case: Case) -> Answer:
    options: dict[str, Any] = {"headers": case.headers}
    if case.json is not None:
        options["json"] = case.json
    response = client.request(case.method, base.rstrip("/") + case.path, **options)
    return Answer(response.status_code, response.headers, response.content)


def _media_type(answer: Answer) -> str | None:
    value = answer.headers.get("content-type")
    return None if value is None else value.split(";", 1)[0].strip().lower()


def _normal(name: str, value: str | None) -> Any:
    if value is None:
        return value
    if name == "allow":  # a set: frameworks build it from one, in any order
        return frozenset(method.strip().upper() for method in value.split(",") if method.strip())
    if name not in ("content-type", "content-disposition"):
        return value
    message = Message()
    message[name] = value
    if name == "content-type":
        return message.get_content_type(), {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_disposition(), message.get_filename()


def _describe(body: bytes) -> str:
    return f"{len(body)} bytes sha256 {hashlib.sha256(body).hexdigest()[:16]}"
