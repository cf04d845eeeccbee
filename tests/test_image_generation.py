"""The image_generation example, with the real InferenceClient talking to a local server that
answers as the Inference API does for text-to-image: offline, and over real HTTP both ways."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from .servers import dualserve_command, running

EXAMPLE = Path(__file__).parent.parent / "examples" / "pipeline_wrappers" / "image_generation"
TOKEN = "hf_test_token_123"


class FakeInferenceAPI(ThreadingHTTPServer):
    """Answers POST /models/{model} like hf-inference text-to-image: the image's bytes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeInferenceAPI

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "authorization": self.headers["Authorization"]})
        mode = self.server.mode
        if mode == "slow":
            time.sleep(3)
        if mode in ("loading", "broken"):
            status = 503 if mode == "loading" else 500
            payload = json.dumps({"error": "Model is currently loading" if mode == "loading" else "boom"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        parameters = body.get("parameters", {})
        buffer = io.BytesIO()
        Image.new("RGB", (parameters.get("width", 64), parameters.get("height", 64)), "orchid").save(buffer, "PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(buffer.getvalue())))
        self.end_headers()
        self.wfile.write(buffer.getvalue())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[FakeInferenceAPI]:
    server = FakeInferenceAPI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(api: FakeInferenceAPI) -> Iterator[str]:
    # The seed command itself: the example's folder as the pipelines directory.
    command, port = dualserve_command(EXAMPLE, "uvicorn")
    env = {"HF_TOKEN": TOKEN, "HF_INFERENCE_ENDPOINT": api.url, "HF_INFERENCE_TIMEOUT": "1"}
    with running(command, port, env) as started:
        yield started.url


@pytest.fixture(params=["", "/flask"], ids=["fastapi", "flask"])
def base(request: pytest.FixtureRequest, served: str) -> str:
    return served + str(request.param)


def test_generates_through_the_inference_client(base: str, api: FakeInferenceAPI) -> None:
    api.mode = "ok"
    api.requests.clear()
    response = httpx2.post(
        f"{base}/image_generation/run", json={"prompt": "A cat on a rainbow", "width": 96, "height": 64}, timeout=30
    )
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (96, 64)
    [sent] = api.requests
    assert sent["path"] == "/models/black-forest-labs/FLUX.1-schnell"
    assert sent["body"]["inputs"] == "A cat on a rainbow"
    assert sent["body"]["parameters"] == {"width": 96, "height": 64}
    assert sent["authorization"] == f"Bearer {TOKEN}"


def test_model_parameter_and_negotiation(base: str, api: FakeInferenceAPI) -> None:
    api.mode = "ok"
    api.requests.clear()
    response = httpx2.get(
        f"{base}/image_generation/run",
        params={"prompt": "x", "model": "stabilityai/sdxl-turbo", "width": 32, "height": 32},
        headers={"accept": "image/webp"},
        timeout=30,
    )
    assert response.headers["content-type"] == "image/webp"
    assert api.requests[0]["path"] == "/models/stabilityai/sdxl-turbo"


@pytest.mark.parametrize(("mode", "status"), [("loading", 503), ("broken", 502), ("slow", 504)])
def test_provider_failures_are_clear_json(base: str, api: FakeInferenceAPI, mode: str, status: int) -> None:
    api.mode = mode
    response = httpx2.post(f"{base}/image_generation/run", json={"prompt": "x"}, timeout=30)
    api.mode = "ok"
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)
    if status == 503:
        assert response.headers["retry-after"] == "20"


def test_no_token_is_401_on_both_frontends(api: FakeInferenceAPI) -> None:
    command, port = dualserve_command(EXAMPLE, "uvicorn")
    with running(command, port, {"HF_TOKEN": "", "HF_INFERENCE_ENDPOINT": api.url}) as started:
        for prefix in ("", "/flask"):
            response = httpx2.post(f"{started.url}{prefix}/image_generation/run", json={"prompt": "x"}, timeout=30)
            assert response.status_code == 401
            assert "HF_TOKEN" in response.json()["detail"]
