"""Limits with safe defaults: simultaneous streams (503 with Retry-After) and sync runs at once.

The stream cap is decided by the core, so its answer is checked on the four in-process
frontends with one set of assertions; that a slot comes back when a client hangs up, and that
``--threads`` bounds the runs at once, depend on the server, so they run on real servers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from dualserve import BasePipelineWrapper, Registry, flask_app
from dualserve.cli import main
from dualserve.frontends import fastapi as fastapi_adapter
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, assert_alike, frontend_client
from tests.servers import MOUNTED, dualserve_command, running
from tests.test_real_servers import PIPELINES, eventually

STARTED: list[str] = []


class MarkedStream(BasePipelineWrapper):
    def run_api(self, mark: str = "x") -> Iterator[bytes]:
        STARTED.append(mark)  # runs on the first pull only: a refused stream never gets here
        yield b"one;"
        yield b"two;"


class Plain(BasePipelineWrapper):
    def run_api(self) -> bytes:
        return b"not a stream"


@pytest.fixture(scope="module")
def capped() -> Service:
    return Service(Registry.from_wrappers({"stream": MarkedStream(), "plain": Plain()}), max_streams=1)


@pytest.fixture
def capped_clients(capped: Service) -> Iterator[dict[str, httpx2.Client]]:
    opened = {name: frontend_client(name, capped) for name in FRONTENDS}
    yield opened
    for client in opened.values():
        client.close()


def test_a_stream_over_the_cap_is_503_before_its_generator_runs(
    capped: Service, capped_clients: dict[str, httpx2.Client]
) -> None:
    assert capped.streams.take()  # a stream being sent elsewhere holds the only slot
    try:
        STARTED.clear()
        assert_alike(capped_clients, lambda client: client.get("stream/run", params={"mark": "b"}))
        assert_alike(capped_clients, lambda client: client.head("stream/run", params={"mark": "b"}))
        response = capped_clients["flask"].get("stream/run", params={"mark": "b"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"detail": "The server is sending its limit of 1 streams; try again shortly."}
        assert STARTED == []
        # Other results are not streams and do not need a slot.
        assert_alike(capped_clients, lambda client: client.get("plain/run"))
        assert capped_clients["fastapi"].get("plain/run").content == b"not a stream"
    finally:
        capped.streams.give_back()
    for name, client in capped_clients.items():
        assert client.get("stream/run", params={"mark": name}).content == b"one;two;", name
        assert capped.streams.in_use == 0, name  # given back once the response was over
    assert STARTED == list(FRONTENDS)


def test_the_cap_and_thread_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Service(Registry.from_wrappers({}), max_streams=0)
    # None stands for the default, as before the settings had names.
    app = flask_app({"plain": Plain()}, max_body_size=None, timeout=None, threads=None, max_streams=None)
    assert app.test_client().get("/plain/run").data == b"not a stream"
    for flags in (["--max-streams", "0"], ["--threads", "0"], ["--server", "flask", "--threads", "4"]):
        with pytest.raises(SystemExit) as exited:
            main(["run", "--pipelines-dir", str(PIPELINES), *flags])
        assert exited.value.code == 2, flags


def _first_chunk_then_hold(url: str, hang_up: threading.Event, got_first: threading.Event) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the slot of a stream the test just closed may still be held
        with httpx2.stream("GET", url, timeout=30) as response:
            if response.status_code == 503:
                time.sleep(0.05)
                continue
            assert response.status_code == 200
            for _ in response.iter_raw():
                got_first.set()
                if hang_up.wait(0):
                    return


@pytest.mark.parametrize("server_name", ["uvicorn", "gunicorn"])
def test_a_slot_comes_back_when_the_client_hangs_up(server_name: str, tmp_path: Path) -> None:
    command, port = dualserve_command(PIPELINES, server_name, "--max-streams", "1")
    with running(command, port) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            url = f"{base}/endless/run?marker={tmp_path / 'marker'}"
            hang_up, got_first = threading.Event(), threading.Event()
            holder = threading.Thread(target=_first_chunk_then_hold, args=(url, hang_up, got_first))
            holder.start()
            try:
                assert got_first.wait(10)
                refused = httpx2.get(url, timeout=10)
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert httpx2.get(f"{base}/status", timeout=10).status_code == 200
            finally:
                hang_up.set()
                holder.join(10)

            def admitted(url: str = url) -> bool:
                with httpx2.stream("GET", url, timeout=10) as response:
                    return response.status_code == 200

            assert eventually(admitted)


@pytest.mark.parametrize("server_name", ["uvicorn", "gunicorn"])
def test_threads_bound_the_sync_runs_at_once(server_name: str) -> None:
    command, port = dualserve_command(PIPELINES, server_name, "--threads", "2")
    with running(command, port) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda url: httpx2.get(url, timeout=30), [f"{base}/occupancy/run"] * 6))
            peaks = [answer.json()["peak"] for answer in answers]
            # Six at once, two threads: runs overlap (so the pool is not one thread) but never beyond two.
            assert max(peaks) == 2, (base, peaks)


class SlowFirstChunk(BasePipelineWrapper):
    def run_api(self) -> Iterator[bytes]:
        time.sleep(0.4)
        yield b"late"


class Deadline:
    """A pure-ASGI request deadline, as services put in front of an app: it cancels the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.wait_for(self.app(scope, receive, send), 0.1)
        except asyncio.TimeoutError:
            await JSONResponse({"detail": "deadline"}, 504)(scope, receive, send)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_cancelled_request_gives_its_stream_slot_back(timeout: float | None) -> None:
    service = Service(Registry.from_wrappers({"slow": SlowFirstChunk()}), max_streams=1, timeout=timeout)
    app = fastapi_adapter.create_app(service)
    app.add_middleware(Deadline)
    with TestClient(app) as client:
        assert client.get("/slow/run").status_code == 504  # cancelled while its thread still runs
        assert eventually(lambda: service.streams.in_use == 0)  # the late reply was discarded
        assert client.get("/status").status_code == 200
