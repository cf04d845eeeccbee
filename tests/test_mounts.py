"""The two a2wsgi mounts: what they take from a2wsgi, and context variables across them.

The mounts subclass only what a2wsgi exports (``WSGIMiddleware``, ``ASGIMiddleware``) and write
the request path themselves. The first tests fail when a2wsgi changes under them: a version
outside the range setup.cfg pins, a private import, a call a2wsgi no longer takes, an attribute
it no longer sets, a lifespan or websocket answer it no longer gives. The others check that a
context variable set by middleware around the composed app reaches the other framework's side,
in process and on real servers.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import inspect
import json
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import a2wsgi
import httpx2
import pytest
from a2wsgi import ASGIMiddleware, WSGIMiddleware
from flask import Flask
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from dualserve import BasePipelineWrapper
from dualserve.frontends import asgi_in_wsgi, wsgi_in_asgi
from dualserve.frontends.compose import compose_asgi, compose_wsgi
from dualserve.frontends.wsgi_in_asgi import WSGIMount
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from tests.servers import free_port, running

ROOT = Path(__file__).resolve().parents[1]
TENANT: ContextVar[str] = ContextVar("tenant", default="unset")


# What the mounts take from a2wsgi.


def pinned_a2wsgi() -> SpecifierSet:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for line in config["options"]["install_requires"].splitlines():
        if line.strip() and (requirement := Requirement(line)).name == "a2wsgi":
            return requirement.specifier
    raise AssertionError("setup.cfg does not require a2wsgi")


def test_a2wsgi_is_inside_the_pinned_range() -> None:
    pinned = pinned_a2wsgi()
    # An upper bound: the mounts rely on attributes and answers a2wsgi does not document.
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in pinned), pinned
    assert a2wsgi.__version__ in pinned, f"a2wsgi {a2wsgi.__version__} is outside {pinned}: check the mounts first"


@pytest.mark.parametrize("module", [wsgi_in_asgi, asgi_in_wsgi], ids=lambda module: module.__name__)
def test_a_mount_imports_only_what_a2wsgi_exports(module: Any) -> None:
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            assert not [alias.name for alias in node.names if alias.name.split(".")[0] == "a2wsgi"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "a2wsgi":
            assert node.module == "a2wsgi", f"{module.__name__} imports from a2wsgi's private {node.module}"
            assert {alias.name for alias in node.names} <= set(a2wsgi.__all__)


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        pytest.param(WSGIMiddleware.__init__, ("app",), {"workers": 64}, id="WSGIMiddleware(app, workers=)"),
        pytest.param(WSGIMiddleware.__call__, ("scope", "receive", "send"), {}, id="WSGIMiddleware()(scope, ...)"),
        pytest.param(ASGIMiddleware.__init__, ("app",), {"loop": None}, id="ASGIMiddleware(app, loop=)"),
    ],
)
def test_a2wsgi_takes_the_calls_the_mounts_make(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    inspect.signature(function).bind("self", *args, **kwargs)


def test_a2wsgi_sets_the_attributes_the_mounts_read() -> None:
    wsgi_app: Any = object()
    wsgi = WSGIMiddleware(wsgi_app, workers=3)
    assert wsgi.app is wsgi_app
    assert isinstance(wsgi.executor, ThreadPoolExecutor)
    assert wsgi.executor._max_workers == 3  # the mount's `threads`
    wsgi.executor.shutdown()
    asgi_app: Any = object()
    loop = asyncio.new_event_loop()
    try:
        asgi = ASGIMiddleware(asgi_app, loop=loop)
        assert asgi.app is asgi_app
        assert asgi.loop is loop
        assert asgi.wait_time is None
    finally:
        loop.close()


def call_asgi(app: ASGIApp, scope: dict[str, Any], incoming: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """What ``app`` sends for ``scope``, given the ``incoming`` messages (then a client that stays)."""
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in incoming:
            queue.put_nowait(message)

        async def receive() -> dict[str, Any]:
            return await queue.get()  # past the messages given, waits until the app is done

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(main())
    return sent


def test_lifespan_and_websocket_get_a2wsgi_s_answers_on_the_flask_mount() -> None:
    mount = WSGIMount(Flask(__name__), threads=2)
    startup, shutdown = {"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}
    assert call_asgi(mount, {"type": "lifespan"}, [startup, shutdown]) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert call_asgi(mount, {"type": "websocket", "path": "/"}) == [{"type": "websocket.close", "code": 1000}]


# The environ the Flask mount builds, written here rather than taken from a2wsgi's build_environ.


def echo_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH", "HTTP_CONTENT_LENGTH", "HTTP_X_TWICE")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({key: environ.get(key) for key in keys}).encode()]


def test_the_flask_mount_builds_the_environ_pep_3333_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    # A SCRIPT_NAME in the process environment replaced the mount prefix through a2wsgi.
    monkeypatch.setenv("SCRIPT_NAME", "/elsewhere")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "root_path": "/flask",
        "path": "/flask/é",
        "query_string": b"q=\xe9",  # a raw byte a server may pass: latin-1 in WSGI, not a crash
        "headers": [(b"content_length", b"5"), (b"x-twice", b"a"), (b"x-twice", b"b")],
        "server": ("testserver", 80),
    }
    sent = call_asgi(WSGIMount(echo_environ, threads=1), scope, [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 200
    assert json.loads(b"".join(message.get("body", b"") for message in sent[1:])) == {
        "SCRIPT_NAME": "/flask",
        "PATH_INFO": "/é".encode().decode("latin-1"),
        "QUERY_STRING": "q=\xe9",
        "CONTENT_LENGTH": None,  # "content_length" is not Content-Length
        "HTTP_CONTENT_LENGTH": "5",
        "HTTP_X_TWICE": "a,b",
    }


# A context variable set by middleware around the composed app, read on the other side.


class TenantWrapper(BasePipelineWrapper):
    def run_api(self) -> str:
        return TENANT.get()


class TenantASGI:
    """Pure ASGI middleware, as a tracing or tenancy layer is: ``X-Tenant`` in TENANT for the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = TENANT.set(Headers(scope=scope).get("x-tenant", "anonymous"))
        try:
            await self.app(scope, receive, send)
        finally:
            TENANT.reset(token)


class TenantWSGI:
    """WSGI middleware doing the same: set around the call, reset before the server reads the body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        token = TENANT.set(environ.get("HTTP_X_TENANT", "anonymous"))
        try:
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        finally:
            TENANT.reset(token)


def tenant_service() -> Service:
    return Service(Registry.from_wrappers({"tenant": TenantWrapper()}))


def served_asgi() -> TenantASGI:
    """FastAPI with Flask mounted at /flask, in the middleware; Flask has a plain route too."""
    app = compose_asgi(tenant_service())
    mounted: Any = next(route.app for route in app.routes if isinstance(route, Mount) and route.path == "/flask")
    flask_app: Flask = mounted.app
    flask_app.add_url_rule("/whoami", "whoami", lambda: TENANT.get())
    return TenantASGI(app)


def served_wsgi() -> TenantWSGI:
    """Flask with FastAPI mounted at /fastapi, in the middleware; FastAPI has a plain route too."""
    app = compose_wsgi(tenant_service())
    fastapi_app = app.wsgi_app.mounts["/fastapi"].app  # type: ignore[attr-defined]

    async def whoami() -> str:
        return TENANT.get()

    fastapi_app.add_api_route("/whoami", whoami)
    return TenantWSGI(app)


# The pipeline through each frontend, and a plain route of the mounted framework.
PATHS = {"/flask": ["/flask/tenant/run", "/flask/whoami", "/tenant/run"]}
PATHS["/fastapi"] = ["/fastapi/tenant/run", "/fastapi/whoami", "/tenant/run"]


def assert_tenant_seen(client: httpx2.Client, prefix: str) -> None:
    for path in PATHS[prefix]:
        for header, tenant in (({"x-tenant": "acme"}, "acme"), ({"x-tenant": "globex"}, "globex"), ({}, "anonymous")):
            response = client.get(path, headers=header)
            # A pipeline's str and FastAPI's answer are JSON; Flask's view answers the text.
            assert (response.status_code, response.text.strip('"')) == (200, tenant), path


def test_a_context_variable_set_by_asgi_middleware_reaches_the_flask_mount() -> None:
    with TestClient(served_asgi()) as client:
        assert_tenant_seen(client, "/flask")


def test_a_context_variable_set_by_wsgi_middleware_reaches_the_fastapi_mount() -> None:
    # httpx's WSGI transport, as a WSGI server does, reads the answer after the middleware reset
    # TENANT: the mount took the context when it was called.
    with httpx2.Client(transport=httpx2.WSGITransport(app=served_wsgi()), base_url="http://testserver") as client:
        assert_tenant_seen(client, "/fastapi")


@pytest.mark.parametrize(("server", "prefix"), [("uvicorn", "/flask"), ("gunicorn", "/fastapi")])
def test_a_context_variable_crosses_the_mount_on_a_real_server(server: str, prefix: str) -> None:
    port = free_port()
    program = str(Path(sys.executable).with_name(server))
    if server == "uvicorn":
        command = [program, "--factory", "tests.test_mounts:served_asgi", "--port", str(port)]
    else:
        command = [program, "--bind", f"127.0.0.1:{port}", "tests.test_mounts:served_wsgi()"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the server imports this module
    with running(command, port, {"PYTHONPATH": path}) as started:
        with httpx2.Client(base_url=started.url, timeout=10) as client:
            assert_tenant_seen(client, prefix)
