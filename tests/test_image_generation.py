"""The image_generation example, with the real InferenceClient talking to a local server that
answers as the Inference API does for text-to-image: offline, and over real HTTP both ways.

Real servers (uvicorn and gunicorn, each at both mount points) also show that ``model`` is a Hub
id and never a URL: the InferenceClient calls a URL given as model with the server's token, so a
URL from the client must be a 422 and no connection may reach it."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from dualserve import Registry
from dualserve.serving.service import Service
from tests.conftest import FRONTENDS, frontend_client
from tests.servers import MOUNTED, dualserve_command, running

EXAMPLE = Path(__file__).parent.parent / "examples" / "pipeline_wrappers" / "image_generation"
TOKEN = "hf_test_token_123"
SERVERS = ["uvicorn", "gunicorn"]


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


@pytest.fixture(scope="module", params=SERVERS)
def served(request: pytest.FixtureRequest, api: FakeInferenceAPI) -> Iterator[tuple[str, str]]:
    # The seed command itself: the example's folder as the pipelines directory.
    command, port = dualserve_command(EXAMPLE, request.param)
    env = {"HF_TOKEN": TOKEN, "HF_INFERENCE_ENDPOINT": api.url, "HF_INFERENCE_TIMEOUT": "1"}
    with running(command, port, env) as started:
        yield request.param, started.url


def at(where: str, served: tuple[str, str]) -> str:
    """The base URL of the frontend at the root or of the one mounted inside it."""
    server, url = served
    return url + (MOUNTED[server] if where == "mounted" else "")


@pytest.fixture(params=["root", "mounted"])
def base(request: pytest.FixtureRequest, served: tuple[str, str]) -> str:
    return at(request.param, served)


@pytest.fixture(scope="module", params=SERVERS)
def exposed(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A server with a token and no HF_INFERENCE_ENDPOINT: where a URL as model would be followed."""
    command, port = dualserve_command(EXAMPLE, request.param)
    env = {"HF_TOKEN": TOKEN, "HF_INFERENCE_ENDPOINT": "", "HF_INFERENCE_TIMEOUT": "1"}
    with running(command, port, env) as started:
        yield request.param, started.url


@pytest.fixture(params=["root", "mounted"])
def exposed_base(request: pytest.FixtureRequest, exposed: tuple[str, str]) -> str:
    return at(request.param, exposed)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket a client names in ``model``: listening, never accepted but by assert_untouched."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def assert_untouched(listener: socket.socket) -> None:
    # The server answered already, and run_api calls the provider before it answers: a connection
    # it made would be waiting in the backlog. The timeout only spares a busy machine a false pass.
    listener.settimeout(0.2)
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        return
    with connection:
        connection.settimeout(1)
        try:
            received = connection.recv(65536)
        except TimeoutError:
            received = b""
    pytest.fail(f"the server connected to the client's URL and sent {received!r}")


def send(base: str, how: str, arguments: dict[str, Any]) -> httpx2.Response:
    if how == "query":
        return httpx2.get(f"{base}/image_generation/run", params=arguments, timeout=30)
    return httpx2.post(f"{base}/image_generation/run", json=arguments, timeout=30)


def assert_refused(response: httpx2.Response, location: str, field: str) -> None:
    assert response.status_code == 422, response.content
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert [problem["loc"] for problem in detail] == [[location, field]]
    assert all(isinstance(problem["msg"], str) and isinstance(problem["type"], str) for problem in detail)
    assert TOKEN not in response.text


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
        params={"prompt": "x", "model": "stabilityai/sdxl-turbo", "width": 64, "height": 64},
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


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("how", ["query", "json"])
def test_a_url_as_model_is_refused_and_never_called(
    exposed_base: str, listener: socket.socket, how: str, scheme: str
) -> None:
    # Before the fix, InferenceClient POSTed to this URL with "authorization: Bearer <HF_TOKEN>"
    # and served back its answer; a closed port told the client so in the 502's detail.
    port = listener.getsockname()[1]
    response = send(exposed_base, how, {"prompt": "x", "model": f"{scheme}://127.0.0.1:{port}/steal"})
    assert_untouched(listener)
    assert_refused(response, "query" if how == "query" else "body", "model")


@pytest.mark.parametrize("how", ["query", "json"])
@pytest.mark.parametrize(
    "model",
    ["http://127.0.0.1:{port}/steal", "../../steal", "owner/../../steal", "/owner/name", "owner/name?x=1"],
)
def test_a_model_that_leaves_the_endpoint_is_refused(
    base: str, api: FakeInferenceAPI, listener: socket.socket, how: str, model: str
) -> None:
    # With HF_INFERENCE_ENDPOINT set, the model is put into {endpoint}/models/{model}: it may name a
    # model there, and neither another host nor another path of the endpoint.
    api.mode = "ok"
    api.requests.clear()
    response = send(base, how, {"prompt": "x", "model": model.format(port=listener.getsockname()[1])})
    assert_untouched(listener)
    assert api.requests == []
    assert_refused(response, "query" if how == "query" else "body", "model")


def test_a_hub_id_in_a_json_body_reaches_the_endpoint(base: str, api: FakeInferenceAPI) -> None:
    api.mode = "ok"
    api.requests.clear()
    model = "stabilityai/stable-diffusion-xl-base-1.0"
    response = httpx2.post(
        f"{base}/image_generation/run", json={"prompt": "x", "model": model, "width": 64, "height": 64}, timeout=30
    )
    assert image_size(response) == (64, 64)
    [sent] = api.requests
    assert sent["path"] == f"/models/{model}"
    assert sent["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prompt": "x", "width": 100_000}, "width"),
        ({"prompt": "x", "height": 63}, "height"),
        ({"prompt": "x" * 1_000_000}, "prompt"),
    ],
    ids=["huge-width", "tiny-height", "megabyte-prompt"],
)
def test_absurd_sizes_and_prompts_are_refused_on_real_servers(
    base: str, api: FakeInferenceAPI, arguments: dict[str, Any], field: str
) -> None:
    api.requests.clear()
    assert_refused(send(base, "json", arguments), "body", field)
    assert api.requests == []


def image_size(response: httpx2.Response) -> tuple[int, int]:
    assert response.status_code == 200, response.content
    with Image.open(io.BytesIO(response.content)) as picture:
        return picture.size


# In process, on every frontend: the pattern's edges, and the bounds, all before any provider call.


@pytest.fixture(scope="module")
def service(api: FakeInferenceAPI) -> Service:
    with pytest.MonkeyPatch.context() as patch:  # the wrapper's setup() reads its settings once
        patch.setenv("HF_TOKEN", TOKEN)
        patch.setenv("HF_INFERENCE_ENDPOINT", api.url)
        patch.setenv("HF_INFERENCE_TIMEOUT", "5")
        registry = Registry.from_directory(EXAMPLE)
    assert registry.failures == {}
    return Service(registry)


@pytest.fixture(params=FRONTENDS)
def client(request: pytest.FixtureRequest, service: Service) -> Iterator[httpx2.Client]:
    with frontend_client(request.param, service) as client:
        yield client


@pytest.mark.parametrize(
    "model",
    [
        "black-forest-labs/FLUX.1-schnell",
        "stabilityai/sdxl-turbo",
        "user_1/my.model-v2",
        "A/b",
        "a" * 96 + "/" + "b" * 96,
    ],
)
def test_hub_ids_are_accepted(client: httpx2.Client, api: FakeInferenceAPI, model: str) -> None:
    api.mode = "ok"
    api.requests.clear()
    response = client.get("image_generation/run", params={"prompt": "x", "model": model, "width": 64, "height": 64})
    assert image_size(response) == (64, 64)
    assert [sent["path"] for sent in api.requests] == [f"/models/{model}"]


@pytest.mark.parametrize(
    "model",
    [
        "http://127.0.0.1:9/steal",
        "https://attacker.example/steal",
        "HTTP://attacker.example/steal",
        "//attacker.example/steal",
        "attacker.example:80/steal",
        "file:///etc/passwd",
        "../../steal",
        "owner/../steal",
        "owner/..",
        "owner..x/name",
        "./owner/name",
        "/owner/name",
        "owner/name/",
        "owner/name/extra",
        "owner/name?x=1",
        "owner/name#x",
        "owner/name%2F..%2F..",
        "owner\\name",
        "owner/name\n",
        " owner/name",
        "-owner/name",
        "owner/name.",
        "owner--/name",
        "ówner/name",
        "gpt2",
        "",
        "a" * 97 + "/" + "b" * 97,
    ],
)
def test_anything_but_a_hub_id_is_refused(client: httpx2.Client, api: FakeInferenceAPI, model: str) -> None:
    api.requests.clear()
    response = client.post("image_generation/run", json={"prompt": "x", "model": model})
    assert_refused(response, "body", "model")
    assert api.requests == []


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("width", 63, 422),
        ("width", 64, 200),
        ("width", 2048, 200),
        ("width", 2049, 422),
        ("height", 0, 422),
        ("height", -512, 422),
        ("height", 10**12, 422),
        ("prompt", "x" * 2000, 200),
        ("prompt", "x" * 2001, 422),
    ],
)
def test_bounds(client: httpx2.Client, api: FakeInferenceAPI, field: str, value: Any, status: int) -> None:
    api.mode = "ok"
    api.requests.clear()
    # The fake API draws the size it is asked for: a small other side keeps the 2048 case quick.
    arguments = {"prompt": "x", "width": 64, "height": 64, field: value}
    response = client.post("image_generation/run", json=arguments)
    if status == 422:
        assert_refused(response, "body", field)
        assert api.requests == []
    else:
        assert response.status_code == 200, response.content
        assert len(api.requests) == 1
