"""JSON as Flask's ``jsonify`` writes it, for a pipeline route that replaces a Flask view. No web framework.

The contract's JSON is compact UTF-8 with the keys in order and no newline; Flask's (3.1,
``DefaultJSONProvider.response`` out of debug mode) is ``json.dumps`` with ``sort_keys=True``,
``ensure_ascii=True`` and ``separators=(",", ":")``, then a ``"\\n"``, sent as ``application/json``:
``{"ok":true}\\n`` is 12 bytes where dualserve sends 11. A route added with ``json="flask"``
answers with these bytes, so a migrated ``/health`` is byte-identical to the view it replaces.

Values Flask's encoder knows are written as it writes them (its ``_default``: dates as HTTP dates,
``Decimal`` and ``UUID`` as strings, dataclasses as dicts, ``__html__``), NaN included. What Flask
cannot encode (a pydantic model, a set, an image's JSON document) is the contract's JSON, keys
sorted and ASCII-escaped the same way. Flask's debug-mode indentation is not copied: a legacy app
is compared as it runs in production.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from datetime import date
from typing import Any

from werkzeug.http import http_date

__all__ = ["flask_json"]


def flask_json(value: Any, fallback: bytes | None = None) -> bytes:
    """``value`` as Flask's ``jsonify(value)`` body.

    :param fallback: the contract's JSON of ``value``, used when Flask could not encode it.
    """
    try:
        text = _dumps(value)
    except (TypeError, ValueError):
        if fallback is None:
            raise
        text = _dumps(json.loads(fallback))
    return f"{text}\n".encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def _default(value: Any) -> Any:
    # flask.json.provider._default, rule for rule.
    if isinstance(value, date):
        return http_date(value)
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
