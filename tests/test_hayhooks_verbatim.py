"""Hayhooks' own image generation example, saved verbatim, served unchanged on every frontend.

``tests/hayhooks_pipelines/image_generation`` is the "Complete Example" of Hayhooks' File Response
Support page as written: ``from hayhooks import BasePipelineWrapper, log``, ``log.info`` with
loguru's ``{}``, ``NamedTemporaryFile(delete=False)`` and a ``FileResponse``. It runs without the
``hayhooks`` package (dualserve stands in) and with it (installed for the test into a folder of
its own, with ``pip --target``), against a local server that answers as the Inference API does.
The example lets the client name the model, so the test points it at that server by URL.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from dualserve import Registry
from dualserve.serving.service import Service

from .conftest import FRONTENDS, frontend_client
from .servers import MOUNTED, dualserve_command, running
from .test_image_generation import TOKEN, FakeInferenceAPI, api  # noqa: F401  (the fixture)
from .test_real_servers import eventually

PIPELINES = Path(__file__).parent / "hayhooks_pipelines"
MODEL = "black-forest-labs/FLUX.1-schnell"


def arguments(fake: FakeInferenceAPI, **extra: str | int) -> dict[str, str | int]:
    return {"prompt": "a cat", "width": 48, "height": 32, "model": f"{fake.url}/models/{MODEL}", **extra}


def assert_generated(response: httpx2.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="generated_image.png"'
    assert Image.open(io.BytesIO(response.content)).size == (48, 32)


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # tempfile caches its folder: point it at one this test can see empty.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def service(api: FakeInferenceAPI) -> Iterator[Service]:  # noqa: F811
    os.environ["HF_TOKEN"] = TOKEN
    try:
        registry = Registry.from_directory(PIPELINES)
    finally:
        del os.environ["HF_TOKEN"]
    assert registry.failures == {}, registry.failures
    yield Service(registry)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_the_verbatim_example_runs_and_leaves_no_temp_file(
    frontend: str,
    service: Service,
    api: FakeInferenceAPI,  # noqa: F811
    temp_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # huggingface_hub reads it when it calls
    with frontend_client(frontend, service) as client, caplog.at_level(logging.INFO, logger="hayhooks"):
        assert_generated(client.post("image_generation/run", json=arguments(api)))
        for _ in range(5):
            head = client.head("image_generation/run", params=arguments(api))
            assert head.status_code == 200 and head.content == b""
    assert api.requests[-1]["authorization"] == f"Bearer {TOKEN}"
    # loguru's "{}" filled in, not a logging traceback.
    assert "Generating image for prompt: 'a cat'" in caplog.messages
    assert eventually(lambda: not any(temp_dir.iterdir())), list(temp_dir.iterdir())


def test_the_stubbed_async_method_is_never_the_one_called(service: Service) -> None:
    pipeline = service.registry.pipelines["image_generation"]
    assert pipeline.function.__name__ == "run_api"


def _hayhooks_installed(target: Path) -> Path:
    """Hayhooks itself, in a folder of its own: with --no-deps, what the example imports needs
    only loguru besides what dualserve has."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    completed = subprocess.run([*command, "hayhooks==2.1.0", "loguru"], capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        reason = f"hayhooks could not be installed from the package index: {completed.stderr.strip()[-300:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return target


@pytest.mark.parametrize("with_hayhooks", [False, True], ids=["stand-in", "hayhooks-2.1.0"])
@pytest.mark.parametrize("server_name", ["uvicorn", "gunicorn"])
def test_the_verbatim_example_on_real_servers(
    server_name: str,
    with_hayhooks: bool,
    api: FakeInferenceAPI,  # noqa: F811
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"HF_TOKEN": TOKEN, "TMPDIR": str(scratch)}
    if with_hayhooks:
        env["PYTHONPATH"] = str(_hayhooks_installed(tmp_path_factory.mktemp("hayhooks")))
    command, port = dualserve_command(PIPELINES, server_name)
    with running(command, port, env) as started:
        for base in (started.url, started.url + MOUNTED[server_name]):
            assert_generated(httpx2.post(f"{base}/image_generation/run", json=arguments(api), timeout=30))
            head = httpx2.head(f"{base}/image_generation/run", params=arguments(api), timeout=30)
            assert head.status_code == 200
        assert eventually(lambda: not any(scratch.iterdir())), list(scratch.iterdir())
        assert "Traceback" not in started.log()
        assert "NotImplementedError" not in started.log()
