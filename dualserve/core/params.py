"""Request arguments from ``run_api``'s signature, validated the same way on every frontend.

No web framework: adapters hand over the raw JSON body, the query pairs, or the form pairs
their framework parsed, and this module answers with keyword arguments or a
:class:`~dualserve.exceptions.ValidationError` in the contract's 422 shape.

A pipeline served at a path of its own (``/files/{name}``) gets the path's values too, as FastAPI
gives path parameters: they are validated with the other arguments, win over a query or body
value of the same name, and an error about one is located ``["path", name]``.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Sequence, Set
from typing import Any

import pydantic
import pydantic_core
from pydantic import BaseModel, Field, create_model

from ..exceptions import ValidationError
from ..uploads import UploadFile

__all__ = ["Parameters", "docstring_arguments"]

_SEQUENCE_ORIGINS = (list, tuple, set, frozenset)
_IMMUTABLE = (str, bytes, int, float, complex, bool, tuple, frozenset, enum.Enum)


class Parameters:
    """The request model of one ``run_api`` function.

    :param function: the bound ``run_api`` (``self`` is already gone).
    :param name: the pipeline's name, used to name the model in the OpenAPI document.
    """

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
        descriptions = docstring_arguments(inspect.getdoc(function) or "")
        fields: dict[str, Any] = {}
        self.sequences: set[str] = set()
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue  # *args/**kwargs have no names a client could send
            annotation = hints.get(parameter.name, Any)
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (annotation, Field(default, description=descriptions.get(parameter.name)))
            if _is_sequence(annotation):
                self.sequences.add(parameter.name)
        #: Whether a parameter is an upload: the request must then be a multipart POST.
        self.uploads = any(_mentions(annotation, UploadFile) for annotation, _ in fields.values())
        model_name = re.sub(r"\W|^(?=\d)", "_", name) + "Request"
        self.model: type[BaseModel] = create_model(model_name, **fields)
        # A GET without a query string is the commonest call of all: when every parameter has an
        # immutable default, its arguments are always the same, so validate them once.
        self._no_arguments: dict[str, Any] | None = None
        defaults = [field.default for field in self.model.model_fields.values()]
        if all(isinstance(value, _IMMUTABLE) or value is None for value in defaults):
            self._no_arguments = _arguments(self.model.model_validate({}))

    def from_json(self, body: bytes, path: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """Validate a JSON object body, and the ``path`` values; an empty body means no arguments."""
        if path:
            try:
                parsed = pydantic_core.from_json(body or b"{}")
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                names = {key for key, _ in path}
                data = {key: value for key, value in parsed.items() if key not in names}
                return self._validate({**data, **self._path_data(path)}, "body", names, retry=names)
            # Not a JSON object: the same 422 as on /{name}/run, from the validation below.
        try:
            instance = self.model.model_validate_json(body or b"{}")
        except pydantic.ValidationError as exc:
            raise _validation_error(exc, "body") from exc
        return _arguments(instance)

    def from_pairs(
        self, pairs: Iterable[tuple[str, Any]], location: str, path: Sequence[tuple[str, str]] = ()
    ) -> dict[str, Any]:
        """Validate query or form pairs, and the ``path`` values: repeated keys fill list
        parameters, the last value wins otherwise."""
        if not pairs and not path and self._no_arguments is not None:
            return dict(self._no_arguments)
        names = {key for key, _ in path}
        data: dict[str, Any] = {}
        for key, value in pairs:
            if key in names:
                continue  # the path's own value wins, as on FastAPI
            if key in self.sequences:
                data.setdefault(key, []).append(value)
            else:
                data[key] = value
        data.update(self._path_data(path))
        return self._validate(data, location, names)

    def _path_data(self, path: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {key: [value] if key in self.sequences else value for key, value in path}

    def _validate(
        self, data: dict[str, Any], location: str, path_names: set[str], retry: set[str] | None = None
    ) -> dict[str, Any]:
        """Validate ``data``; ``retry``: the names whose failing text may be read as JSON (all by default)."""
        try:
            instance = self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            # Text cannot say 1 (for Literal[1]) or {"a": 2} (for a model) any other way: read the
            # failing values as JSON and try once more.
            failing = {error["loc"][0] for error in exc.errors() if error["loc"]}
            decoded = _json_decoded(data, failing if retry is None else failing & retry)
            if decoded is None:
                raise _validation_error(exc, location, path_names) from exc
            try:
                instance = self.model.model_validate(decoded)
            except pydantic.ValidationError as retry_exc:
                raise _validation_error(retry_exc, location, path_names) from retry_exc
        return _arguments(instance)


def docstring_arguments(docstring: str) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring as ``{name: description}``."""
    descriptions: dict[str, str] = {}
    in_args = False
    current: str | None = None
    indent: int | None = None
    for line in docstring.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current, indent = True, None, None
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        line_indent = len(line) - len(line.lstrip())
        if indent is None:
            indent = line_indent
        if line_indent < indent or (line_indent == 0 and stripped.endswith(":")):
            in_args = False
            continue
        match = re.match(r"(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", stripped)
        if line_indent == indent and match:
            current = match.group(1).lstrip("*")
            descriptions[current] = match.group(2)
        elif current is not None:
            descriptions[current] = f"{descriptions[current]} {stripped}".strip()
    return descriptions


def _json_decoded(data: dict[str, Any], names: set[Any]) -> dict[str, Any] | None:
    changed = False
    decoded = dict(data)
    for name in names & data.keys():
        values = data[name] if isinstance(data[name], list) else [data[name]]
        parsed = []
        for value in values:
            try:
                parsed.append(json.loads(value) if isinstance(value, str) else value)
                changed = changed or isinstance(value, str)
            except ValueError:
                parsed.append(value)
        decoded[name] = parsed if isinstance(data[name], list) else parsed[0]
    return decoded if changed else None


def _arguments(instance: BaseModel) -> dict[str, Any]:
    # A shallow read keeps nested pydantic models as models, as run_api declared them.
    return {name: getattr(instance, name) for name in type(instance).model_fields}


def _validation_error(
    exc: pydantic.ValidationError, location: str, path_names: Set[str] = frozenset()
) -> ValidationError:
    return ValidationError(
        [
            {
                "loc": ["path" if error["loc"] and error["loc"][0] in path_names else location, *error["loc"]],
                "msg": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return any(_is_sequence(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return origin in _SEQUENCE_ORIGINS or annotation in _SEQUENCE_ORIGINS


def _mentions(annotation: Any, target: type) -> bool:
    if annotation is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(annotation))
