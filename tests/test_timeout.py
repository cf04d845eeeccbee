"""--timeout: a pipeline that does not answer in time is a 504 JSON, on every frontend; what it
answers later is discarded (its temp file deleted), and the others keep serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from dualserve import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, frontend_client
from tests.wrappers import make_wrappers


@pytest.fixture(scope="module")
def timed_service() -> Service:
    return Service(Registry.from_wrappers(make_wrappers()), timeout=0.3)


@pytest.fixture(params=FRONTENDS)
def timed(request: pytest.FixtureRequest, timed_service: Service) -> Iterator[httpx2.Client]:
    with frontend_client(request.param, timed_service) as client:
        yield client


def test_slow_pipeline_is_504_and_its_late_answer_is_discarded(timed: httpx2.Client, tmp_path: Path) -> None:
    response = timed.get("slow/run", params={"directory": str(tmp_path)})
    assert response.status_code == 504
    assert response.json() == {"detail": "The pipeline did not answer within 0.3 seconds."}
    (tmp_path / "release").write_text("go")
    deadline = time.monotonic() + 10
    while not (tmp_path / "written").exists() or (tmp_path / "late.bin").exists():
        assert time.monotonic() < deadline, "the late answer's temp file was never deleted"
        time.sleep(0.02)
    assert timed.get("image/run", params={"prompt": "x"}).status_code == 200


def test_fast_pipelines_are_untouched(timed: httpx2.Client) -> None:
    assert timed.get("stream/run").content == b"chunk-0;chunk-1;chunk-2;"
    assert timed.post("async_json/run", json={"shape": "circle"}).status_code == 200
