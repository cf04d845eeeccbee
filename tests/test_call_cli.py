"""`dualserve call` as a user runs it: the real command against a real server, on FastAPI at `/`
and on the Flask mount at `/flask`. Every item of a several-item answer is written, JSON is printed
as the server sent it, and every failure is one line on stderr with exit status 1 or 2."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from dualserve.client import interpret
from tests.servers import DUALSERVE, dualserve_command, free_port, running

PIPELINES = Path(__file__).parent / "pipelines"
# tests/pipelines/several answers three PNGs of these sizes.
SEVERAL_SIZES = [(10, 10), (11, 10), (12, 10)]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    command, port = dualserve_command(PIPELINES, "uvicorn")
    with running(command, port) as started:
        yield started.url


@pytest.fixture(params=["", "/flask"], ids=["fastapi", "flask"])
def url(request: pytest.FixtureRequest, server: str) -> str:
    return server + str(request.param)


def call(url: str, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``dualserve call`` with stdout and stderr pipes (so never a terminal)."""
    return subprocess.run(
        [DUALSERVE, "call", *arguments, "--url", url], capture_output=True, timeout=60, check=False, cwd=cwd
    )


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def assert_one_line_failure(completed: subprocess.CompletedProcess[bytes], status: int, *words: str) -> str:
    stderr = completed.stderr.decode()
    assert completed.returncode == status, stderr
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("dualserve call: "), stderr
    for word in words:
        assert word in stderr
    return stderr


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder/", "existing-folder"])
def test_several_images_to_a_folder(url: str, tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "out"
    if existing:
        folder.mkdir()
    completed = call(url, "several", "-o", str(folder) if existing else f"{folder}/")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == b""
    files = sorted(folder.iterdir())
    assert [path.name for path in files] == ["image_0.png", "image_1.png", "image_2.png"]
    assert [png_size(path.read_bytes()) for path in files] == SEVERAL_SIZES
    assert completed.stderr.decode().splitlines() == [str(path) for path in files]


def test_several_images_piped_to_stdout_are_the_servers_zip(url: str) -> None:
    completed = call(url, "several")
    assert completed.returncode == 0, completed.stderr
    with zipfile.ZipFile(io.BytesIO(completed.stdout)) as archive:
        assert archive.namelist() == ["image_0.png", "image_1.png", "image_2.png"]
        assert [png_size(archive.read(name)) for name in archive.namelist()] == SEVERAL_SIZES
    sent = httpx2.post(f"{url}/several/run", json={}, headers={"accept": "application/zip"}, timeout=10)
    assert completed.stdout == sent.content


def test_several_images_to_a_zip_file(url: str, tmp_path: Path) -> None:
    target = tmp_path / "several.zip"
    completed = call(url, "several", "-p", "count=2", "-o", str(target))
    assert completed.returncode == 0, completed.stderr
    with zipfile.ZipFile(target) as archive:
        assert [png_size(archive.read(name)) for name in archive.namelist()] == SEVERAL_SIZES[:2]


def test_several_images_to_one_file_is_refused_not_dropped(url: str, tmp_path: Path) -> None:
    target = tmp_path / "one.png"
    completed = call(url, "several", "-o", str(target))
    assert_one_line_failure(completed, 2, "3 items", "folder", ".zip")
    assert not target.exists()


def test_one_item_of_several_to_one_file(url: str, tmp_path: Path) -> None:
    target = tmp_path / "one.png"
    completed = call(url, "several", "-p", "count=1", "-o", str(target))
    assert completed.returncode == 0, completed.stderr
    assert png_size(target.read_bytes()) == SEVERAL_SIZES[0]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["several"], id="several"),
        pytest.param(["picture", "-p", "width=6", "-p", "height=4"], id="one-image"),
        pytest.param(["provider_b64"], id="provider-json"),
    ],
)
def test_accept_json_prints_the_servers_json(url: str, arguments: list[str]) -> None:
    completed = call(url, *arguments, "--accept", "application/json")
    assert completed.returncode == 0, completed.stderr
    params = {key: json.loads(value) for key, _, value in (item.partition("=") for item in arguments[2::2])}
    sent = httpx2.post(f"{url}/{arguments[0]}/run", json=params, headers={"accept": "application/json"}, timeout=10)
    assert sent.headers["content-type"] == "application/json"
    assert completed.stdout == sent.content  # piped: the server's bytes, as they came
    assert json.loads(completed.stdout) == sent.json()


def test_accept_json_to_a_json_file_keeps_the_document(url: str, tmp_path: Path) -> None:
    target = tmp_path / "several.json"
    completed = call(url, "several", "--accept", "application/json", "-o", str(target))
    assert completed.returncode == 0, completed.stderr
    document = json.loads(target.read_text())
    assert document["count"] == 3
    assert [png_size(base64.b64decode(item["data"])) for item in document["items"]] == SEVERAL_SIZES


def test_accept_json_to_a_folder_saves_every_item(url: str, tmp_path: Path) -> None:
    completed = call(url, "several", "--accept", "application/json", "-o", f"{tmp_path}/out/")
    assert completed.returncode == 0, completed.stderr
    assert [png_size(path.read_bytes()) for path in sorted((tmp_path / "out").iterdir())] == SEVERAL_SIZES


def test_no_server_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    completed = call(url, "several")
    assert_one_line_failure(completed, 1, f"{url}/several/run", "onnect")
    assert completed.stdout == b""


def test_validation_error_is_one_line_with_status_and_detail(url: str) -> None:
    completed = call(url, "picture", "-p", "width=wide")
    assert_one_line_failure(completed, 1, "422", "width")


def test_unknown_pipeline_is_one_line(url: str) -> None:
    assert_one_line_failure(call(url, "no_such_pipeline"), 1, "404")


def test_timeout_is_one_line(url: str, tmp_path: Path) -> None:
    signal = tmp_path / "never"
    completed = call(url, "blocker", "-p", f"signal={signal}", "-p", "timeout=3", "--timeout", "0.5")
    assert_one_line_failure(completed, 1, "--timeout", "0.5 s")


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        pytest.param(["-p", "width"], ["KEY=VALUE"], id="bad-p"),
        pytest.param(["-p", "width=3", "-p", "width=4"], ["twice"], id="repeated-p"),
        pytest.param(["-o", "/no/such/folder/out.png"], ["/no/such/folder"], id="unwritable-output"),
        pytest.param(["--timeout", "0"], ["--timeout"], id="zero-timeout"),
    ],
)
def test_usage_errors_are_one_line_status_2(url: str, arguments: list[str], words: list[str]) -> None:
    completed = call(url, "picture", *arguments)
    assert_one_line_failure(completed, 2, *words)


def test_a_url_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    assert_one_line_failure(call("127.0.0.1:1416", "picture"), 2, "--url")


def test_one_image_still_saves_and_pipes(url: str, tmp_path: Path) -> None:
    target = tmp_path / "picture.png"
    assert call(url, "picture", "-p", "width=7", "-p", "height=3", "-o", str(target)).returncode == 0
    assert png_size(target.read_bytes()) == (7, 3)
    piped = call(url, "picture", "-p", "width=5", "-p", "height=2")
    assert piped.returncode == 0, piped.stderr
    assert png_size(piped.stdout) == (5, 2)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert call(url, "picture", "-o", str(folder)).returncode == 0
    assert [path.name for path in folder.iterdir()] == ["picture.png"]


def call_on_a_terminal(url: str, *arguments: str) -> tuple[int, bytes, bytes]:
    """``dualserve call`` with stdout on a pseudo-terminal; stderr a pipe."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [DUALSERVE, "call", *arguments, "--url", url], stdout=terminal, stderr=subprocess.PIPE
    ) as process:
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
        stderr = process.stderr.read() if process.stderr else b""
        status = process.wait(timeout=60)
    os.close(controller)
    return status, output, stderr


def test_several_images_on_a_terminal_are_refused_in_one_line(url: str) -> None:
    status, output, stderr = call_on_a_terminal(url, "several")
    assert output == b""
    assert_one_line_failure(subprocess.CompletedProcess([], status, output, stderr), 2, "-o", "pipe")


def test_json_on_a_terminal_is_the_servers_document_indented(url: str) -> None:
    status, output, stderr = call_on_a_terminal(url, "several", "--accept", "application/json")
    assert status == 0, stderr
    sent = httpx2.post(f"{url}/several/run", json={}, headers={"accept": "application/json"}, timeout=10)
    assert json.loads(output) == sent.json()
    assert output.startswith(b"{\r\n  ")  # the terminal turns \n into \r\n


@pytest.mark.parametrize(
    "document",
    [
        {"count": 2, "items": ["a", "b"]},
        {"count": 1, "items": [{"data": 5}]},
        {"media_type": "image/png", "data": "not base64!"},
        {"artifacts": [{"base64": None}]},
    ],
)
def test_json_data_that_looks_like_media_stays_data(document: object) -> None:
    raw = json.dumps(document).encode()
    result = interpret(200, httpx2.Headers({"content-type": "application/json"}), raw)
    assert (result.media_type, result.content, result.data) == ("application/json", raw, document)


def test_a_zip_with_folders_and_repeated_names_loses_no_item(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/", b"")
        archive.writestr("a/x.bin", b"1")
        archive.writestr("b/x.bin", b"2")
        archive.writestr("../../..", b"3")
    result = interpret(200, httpx2.Headers({"content-type": "application/zip"}), buffer.getvalue())
    paths = result.save_all(tmp_path / "out")
    assert [(path.parent, path.read_bytes()) for path in paths] == [(tmp_path / "out", b) for b in (b"1", b"2", b"3")]
    assert len(set(paths)) == 3
