"""``dualserve run`` as a real process for each --server, called over loopback."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from tests.servers import DUALSERVE, MOUNTED, dualserve_run, free_port, serve

PIPELINES = Path(__file__).parent / "pipelines"
SERVERS = ["uvicorn", "gunicorn", "flask"]
CONTENT_HEADERS = ("content-type", "content-length", "etag", "cache-control", "accept-ranges", "content-disposition")


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with dualserve_run(PIPELINES, request.param) as url:
        yield request.param, url


@pytest.mark.parametrize("mounted", [False, True], ids=["root", "mounted"])
def test_png_over_loopback(server: tuple[str, str], mounted: bool) -> None:
    name, url = server
    base = url + (MOUNTED[name] if mounted else "")
    response = httpx2.post(f"{base}/picture/run", json={"width": 40, "height": 30}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ("PNG", (40, 30))


def test_both_frontends_answer_alike(server: tuple[str, str]) -> None:
    name, url = server
    answers = []
    for base in (url, url + MOUNTED[name]):
        response = httpx2.get(f"{base}/picture/run?width=5", timeout=10)
        answers.append((response.status_code, [response.headers.get(h) for h in CONTENT_HEADERS], response.content))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("mounted", [False, True], ids=["root", "mounted"])
def test_sync_run_api_does_not_block_other_requests(server: tuple[str, str], mounted: bool, tmp_path: Path) -> None:
    # The blocker waits for a file only the releaser writes. If a sync run_api held the event
    # loop (or the only worker thread), the releaser could not run and the blocker would time out.
    name, url = server
    base = url + (MOUNTED[name] if mounted else "")
    signal_file = str(tmp_path / "go")
    outcome: dict[str, object] = {}

    def block() -> None:
        outcome.update(httpx2.get(f"{base}/blocker/run", params={"signal": signal_file}, timeout=30).json())

    blocker = threading.Thread(target=block)
    blocker.start()
    released = httpx2.get(f"{base}/releaser/run", params={"signal": signal_file}, timeout=30)
    blocker.join()
    assert released.json() == {"sent": True}
    assert outcome == {"released": True}


def test_uvicorn_workers(tmp_path: Path) -> None:
    with dualserve_run(PIPELINES, "uvicorn", "--workers", "2") as url:
        response = httpx2.get(f"{url}/flask/picture/run", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "--pipelines-dir", "/no/such/dir"], "is not a directory"),
        (["run", "--pipelines-dir", str(PIPELINES), "--server", "flask", "--workers", "2"], "use uvicorn or gunicorn"),
        (["run", "--pipelines-dir", str(PIPELINES), "--server", "tornado"], "invalid choice"),
        (["run", "--pipelines-dir", str(PIPELINES), "--broker", "redis://127.0.0.1:1/0"], "go together"),
        (["run", "--pipelines-dir", str(PIPELINES), "--broker", "amqp://x", "--store", "/tmp"], "a Redis URL"),
        (["run", "--pipelines-dir", str(PIPELINES), "--s3-redirect"], "needs an s3://"),
        (
            ["run", "--pipelines-dir", str(PIPELINES), "--broker", "redis://h/0", "--store", "/tmp", "--s3-redirect"],
            "needs an s3://",
        ),
        (["worker", "--pipelines-dir", str(PIPELINES)], "needs --broker and --store"),
        (
            [
                "worker",
                "--pipelines-dir",
                str(PIPELINES),
                "--broker",
                "redis://h/0",
                "--store",
                "/tmp",
                "--concurrency",
                "0",
            ],
            "1 or more",
        ),
    ],
)
def test_cli_errors_are_clear(arguments: list[str], message: str) -> None:
    completed = subprocess.run([DUALSERVE, *arguments], capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 2
    assert message in completed.stderr


BIN = Path(DUALSERVE).parent


@pytest.mark.parametrize(
    ("command", "prefixes"),
    [
        pytest.param(
            [str(BIN / "uvicorn"), "--factory", "dualserve.asgi:create_app", "--port", "{port}"],
            ("", "/flask"),
            id="uvicorn-factory",
        ),
        pytest.param(
            [str(BIN / "flask"), "--app", "dualserve.wsgi", "run", "--port", "{port}"], ("", "/fastapi"), id="flask-run"
        ),
        pytest.param(
            [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "dualserve.wsgi:create_app()"],
            ("", "/fastapi"),
            id="gunicorn-app",
        ),
    ],
)
def test_entry_points_for_servers_own_commands(command: list[str], prefixes: tuple[str, str]) -> None:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with serve(command, port, env={"DUALSERVE_PIPELINES_DIR": str(PIPELINES)}) as url:
        for prefix in prefixes:
            response = httpx2.get(f"{url}{prefix}/picture/run?width=9&height=9", timeout=10)
            assert response.status_code == 200
            assert Image.open(io.BytesIO(response.content)).size == (9, 9)
