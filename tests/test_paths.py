"""safe_path and Media(root=...): names from clients cannot leave the served folder, on every frontend."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest

from dualserve import HTTPError, safe_path
from tests.wrappers import DATA


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("sample.png", 200),
        ("../wrappers.py", 404),
        ("/etc/passwd", 404),
        ("notes.txt/../../conftest.py", 404),
        ("..%2Fwrappers.py", 404),
        ("%2e%2e/wrappers.py", 404),
        ("", 404),
        (".", 404),
        ("nope.png", 404),
        ("a\x00b", 400),
    ],
)
def test_names_that_leave_the_root_are_json_errors(client: httpx2.Client, name: str, status: int) -> None:
    response = client.get("safe_file/run", params={"name": name})
    assert response.status_code == status
    if status != 200:
        assert response.headers["content-type"] == "application/json"


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "inside.txt").write_text("ok")
    os.symlink(tmp_path.parent, root / "escape")
    os.symlink(root / "inside.txt", root / "alias.txt")
    assert safe_path(root, "alias.txt") == (root / "inside.txt").resolve()
    with pytest.raises(HTTPError) as info:
        safe_path(root, "escape/x")
    assert info.value.status_code == 404


def test_absolute_path_inside_the_root_is_fine() -> None:
    assert safe_path(DATA, str(DATA / "notes.txt")) == (DATA / "notes.txt").resolve()


def test_media_results_say_nosniff(client: httpx2.Client) -> None:
    assert client.get("safe_file/run", params={"name": "sample.png"}).headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("kind", "download", "sandboxed"), [("svg", False, True), ("html", False, True), ("svg", True, False)]
)
def test_svg_and_html_cannot_run_script_inline(
    client: httpx2.Client, kind: str, download: bool, sandboxed: bool
) -> None:
    response = client.get("active/run", params={"kind": kind, "download": str(download).lower()})
    assert (response.headers.get("content-security-policy") == "sandbox") is sandboxed
