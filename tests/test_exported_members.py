from __future__ import annotations

import types

import dualserve


def test_all_is_sorted_and_complete() -> None:
    # Submodules appear in the package namespace once imported; they are not exports.
    public = [
        name
        for name, value in vars(dualserve).items()
        if not name.startswith("_") and name != "annotations" and not isinstance(value, types.ModuleType)
    ]
    assert dualserve.__all__ == sorted(public, key=str.casefold)


def test_every_export_resolves() -> None:
    for name in dualserve.__all__:
        assert getattr(dualserve, name) is not None
