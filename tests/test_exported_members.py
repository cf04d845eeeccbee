from __future__ import annotations

import dualserve


def test_all_is_sorted_and_complete() -> None:
    public = [name for name in vars(dualserve) if not name.startswith("_") and name not in MODULES]
    assert dualserve.__all__ == sorted(public, key=str.casefold)


def test_every_export_resolves() -> None:
    for name in dualserve.__all__:
        assert getattr(dualserve, name) is not None


# Submodules appear in the package namespace once imported; they are not exports.
MODULES = {
    "annotations",
    "adapters",
    "aio",
    "apps",
    "config",
    "exceptions",
    "http",
    "images",
    "media",
    "mount",
    "params",
    "pipelines",
    "replies",
    "requests",
    "results",
    "service",
    "sniff",
    "uploads",
    "wrapper",
    "asgi",
    "wsgi",
    "cli",
}
