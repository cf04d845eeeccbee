"""Arguments from run_api's signature: docstrings, query and JSON validation."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from dualserve import ValidationError
from dualserve.core.params import Parameters, docstring_arguments


class Box(BaseModel):
    side: int


def run_api(
    prompt: str, count: Literal[1, 2] = 1, box: Box | None = None, flags: list[bool] | None = None, *args, **kw
) -> None:
    """Do a thing.

    Args:
        prompt: what to draw,
            over two lines.
        count (int): how many.

    Returns:
        nothing: at all.
    """


PARAMETERS = Parameters(run_api, "demo")


def test_docstring_args() -> None:
    assert docstring_arguments(run_api.__doc__ or "") == {
        "prompt": "what to draw, over two lines.",
        "count": "how many.",
    }


def test_descriptions_reach_the_schema() -> None:
    schema = PARAMETERS.model.model_json_schema()
    assert schema["properties"]["prompt"]["description"] == "what to draw, over two lines."
    assert schema["required"] == ["prompt"]
    assert "args" not in schema["properties"] and "kw" not in schema["properties"]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param([("prompt", "p")], {"prompt": "p", "count": 1, "box": None, "flags": None}, id="defaults"),
        pytest.param([("prompt", "a"), ("prompt", "b")], {"prompt": "b"}, id="last-value-wins"),
        pytest.param([("prompt", "p"), ("count", "2")], {"count": 2}, id="literal-int-from-text"),
        pytest.param([("prompt", "p"), ("box", '{"side": 3}')], {"box": Box(side=3)}, id="model-from-json-text"),
        pytest.param(
            [("prompt", "p"), ("flags", "true"), ("flags", "0")], {"flags": [True, False]}, id="repeated-list"
        ),
        pytest.param([("prompt", "p"), ("unknown", "x")], {"prompt": "p"}, id="unknown-ignored"),
    ],
)
def test_from_pairs(pairs: list[tuple[str, str]], expected: dict[str, object]) -> None:
    arguments = PARAMETERS.from_pairs(pairs, "query")
    assert {key: arguments[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("pairs", "errors"),
    [
        ([], [(["query", "prompt"], "missing")]),
        ([("prompt", "p"), ("count", "3")], [(["query", "count"], "literal_error")]),
        ([("prompt", "p"), ("box", "{bad")], [(["query", "box"], "model_type")]),
    ],
)
def test_from_pairs_errors(pairs: list[tuple[str, str]], errors: list[tuple[list[object], str]]) -> None:
    with pytest.raises(ValidationError) as info:
        PARAMETERS.from_pairs(pairs, "query")
    assert info.value.status_code == 422
    assert [(error["loc"], error["type"]) for error in info.value.detail] == errors


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b"{", ["body"], "json_invalid"),
        (b"[]", ["body"], "model_type"),
        (b'{"prompt": 1}', ["body", "prompt"], "string_type"),
        (b'{"prompt": "p", "box": {"side": "x"}}', ["body", "box", "side"], "int_parsing"),
    ],
)
def test_from_json_errors(body: bytes, loc: list[object], kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        PARAMETERS.from_json(body)
    assert [(error["loc"], error["type"]) for error in info.value.detail] == [(loc, kind)]


def test_empty_body_means_no_arguments() -> None:
    parameters = Parameters(lambda width=3: None, "x")
    assert parameters.from_json(b"") == {"width": 3}
