"""Every frontend as an ``httpx2.Client``, so one set of assertions runs against all four."""

from __future__ import annotations

import wsgiref.validate
from collections.abc import Iterator

import httpx2
import pytest
from starlette.testclient import TestClient

from dualserve.adapters import fastapi as fastapi_adapter
from dualserve.adapters import flask as flask_adapter
from dualserve.mount import compose_asgi, compose_wsgi
from dualserve.pipelines import Registry
from dualserve.service import Service

from . import flask_wrappers, hayhooks_wrappers
from .wrappers import make_wrappers

FRONTENDS = ["fastapi", "flask", "flask-in-fastapi", "fastapi-in-flask"]


@pytest.fixture(scope="session")
def service() -> Service:
    wrappers = {
        **make_wrappers(),
        **{name: cls() for name, cls in hayhooks_wrappers.WRAPPERS.items()},
        **{name: cls() for name, cls in flask_wrappers.WRAPPERS.items()},
    }
    return Service(Registry.from_wrappers(wrappers))


def frontend_client(name: str, service: Service) -> httpx2.Client:
    if name == "fastapi":
        return TestClient(fastapi_adapter.create_app(service))
    if name == "flask":
        app = wsgiref.validate.validator(flask_adapter.create_app(service))
        return httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://testserver")
    if name == "flask-in-fastapi":
        return TestClient(compose_asgi(service), base_url="http://testserver/flask")
    if name == "fastapi-in-flask":
        app = compose_wsgi(service)
        return httpx2.Client(transport=httpx2.WSGITransport(app=app), base_url="http://testserver/fastapi")
    raise ValueError(name)


@pytest.fixture(params=FRONTENDS)
def client(request: pytest.FixtureRequest, service: Service) -> Iterator[httpx2.Client]:
    with frontend_client(request.param, service) as client:
        yield client


@pytest.fixture
def clients(service: Service) -> Iterator[dict[str, httpx2.Client]]:
    """All four frontends at once, to compare their answers to one request."""
    opened = {name: frontend_client(name, service) for name in FRONTENDS}
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()
