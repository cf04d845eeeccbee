"""Which loop runs async wrapper code (issue 14): a server's own when it builds the app on its loop.

uvicorn calls the app factory on its running loop. The portal then adopts that loop: an async
``setup()`` is awaited there at startup (or before the first request, where no lifespan runs), and
``run_api`` and async streams are awaited with no hop to another thread. Built outside any loop,
the app sets up at once on the portal's own thread, as gunicorn and ``flask run`` need. The same
on real servers: ``tests/test_real_servers.py`` checks the thread names under uvicorn and gunicorn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from dualserve import BasePipelineWrapper, asgi_app
from dualserve.serving.aio import portal


class LoopProbe(BasePipelineWrapper):
    async def setup(self) -> None:
        self.setup_loop = asyncio.get_running_loop()

    async def run_api(self) -> dict[str, Any]:
        return {"same_loop": asyncio.get_running_loop() is self.setup_loop, "thread": threading.current_thread().name}


class AsyncStream(BasePipelineWrapper):
    def setup(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def run_api(self) -> AsyncIterator[bytes]:
        for index in range(3):
            self.loops.append(asyncio.get_running_loop())
            yield f"{index}\n".encode()


class BrokenSetup(BasePipelineWrapper):
    async def setup(self) -> None:
        raise RuntimeError("no model here")

    async def run_api(self) -> str:
        return "never"


@pytest.fixture
def fresh_portal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The process's portal may already run a loop of its own (other tests); an app built on a
    # server's loop adopts that loop only while the portal has none.
    monkeypatch.setattr(portal, "_loop", None)
    yield


def serve_in_loop(wrappers: dict[str, Any], requests: list[str], lifespan: bool) -> tuple[Any, list[httpx2.Response]]:
    """Build the app on a running loop, as uvicorn's factory call does, and send ``requests``."""

    async def main() -> tuple[Any, list[httpx2.Response]]:
        app = asgi_app(wrappers)
        pending_at_build = sorted(app.state.dualserve.registry.pending)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            if lifespan:
                async with app.router.lifespan_context(app):
                    answers = [await client.get(path) for path in requests]
            else:
                answers = [await client.get(path) for path in requests]
        return (pending_at_build, app, asyncio.get_running_loop()), answers

    return asyncio.run(main())


@pytest.mark.parametrize("lifespan", [True, False], ids=["lifespan", "no-lifespan"])
def test_app_built_on_a_loop_sets_up_and_runs_there(fresh_portal: None, lifespan: bool) -> None:
    stream = AsyncStream()
    (pending, app, loop), answers = serve_in_loop(
        {"probe": LoopProbe(), "stream": stream, "broken": BrokenSetup()},
        ["/probe/run", "/flask/probe/run", "/stream/run", "/status", "/broken/run"],
        lifespan,
    )
    assert pending == ["broken", "probe"]  # awaited on that loop, not blocked on at build time
    probe, mounted, streamed, status, broken = answers
    assert probe.json() == {"same_loop": True, "thread": "MainThread"}
    # The Flask mount runs in a thread and calls into the same loop.
    assert mounted.json() == {"same_loop": True, "thread": "MainThread"}
    assert (streamed.status_code, streamed.content) == (200, b"0\n1\n2\n")
    assert stream.loops == [loop] * 3  # iterated on the server's loop itself
    assert status.json()["pipelines"] == ["probe", "stream"]
    assert "setup() raised RuntimeError: no model here" in status.json()["failed"]["broken"]
    assert broken.status_code == 503
    assert not app.state.dualserve.registry.pending


def test_app_built_outside_a_loop_sets_up_on_the_portal_thread(fresh_portal: None) -> None:
    app = asgi_app({"probe": LoopProbe()})
    assert not app.state.dualserve.registry.pending  # set up at once, on the portal's own loop
    assert portal.loop.is_running()

    async def main() -> dict[str, Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            answer: dict[str, Any] = (await client.get("/probe/run")).json()
            return answer

    assert asyncio.run(main()) == {"same_loop": True, "thread": "dualserve-portal"}
