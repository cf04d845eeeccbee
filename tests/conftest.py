"""Every frontend as an ``httpx2.Client``, so one set of assertions runs against all four."""

from __future__ import annotations

import os
import wsgiref.validate
from collections.abc import Callable, Iterator

import httpx2
import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from dualserve.frontends import fastapi as fastapi_adapter
from dualserve.frontends import flask as flask_adapter
from dualserve.frontends.compose import compose_asgi, compose_wsgi
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from tests import flask_wrappers, hayhooks_wrappers
from tests.wrappers import make_wrappers

FRONTENDS = ["fastapi", "flask", "flask-in-fastapi", "fastapi-in-flask"]
#: The Flask app with a request hook, so every request goes through Flask's own dispatch: the
#: answers must not change when GET and HEAD on /<name>/run stop skipping it.
DISPATCHED = "flask-dispatched"
# Headers a server adds on its own, or that carry the time.
VOLATILE = {"date", "server", "connection", "keep-alive", "transfer-encoding"}

# Hypothesis: by default derandomized and without an example database, so a run in CI fails the
# same way every time it fails; HYPOTHESIS_PROFILE=long runs LONG_SCALE times the examples, freshly
# random (and remembered in .hypothesis/), for a longer hunt on a workstation.
settings.register_profile(
    "dualserve", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", deadline=None, suppress_health_check=[HealthCheck.too_slow])
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dualserve")
LONG_SCALE = 25


def hypothesis_settings(examples: int) -> settings:
    """The active profile with ``examples`` examples (LONG_SCALE times as many under ``long``)."""
    scale = LONG_SCALE if HYPOTHESIS_PROFILE == "long" else 1
    return settings(settings.get_profile(HYPOTHESIS_PROFILE), max_examples=examples * scale)


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
    if name == DISPATCHED:
        dispatched = flask_adapter.create_app(service)
        dispatched.before_request(lambda: None)
        app = wsgiref.validate.validator(dispatched)
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
    """All four frontends at once, and Flask through its own dispatch, to compare their answers."""
    opened = {name: frontend_client(name, service) for name in [*FRONTENDS, DISPATCHED]}
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()


def assert_alike(clients: dict[str, httpx2.Client], send: Callable[[httpx2.Client], httpx2.Response]) -> None:
    """The same request on every frontend: byte-identical status, headers (but VOLATILE) and body."""
    answers = {}
    for name, client in clients.items():
        response = send(client)
        headers = sorted((key, value) for key, value in response.headers.items() if key not in VOLATILE)
        answers[name] = (response.status_code, headers, response.content)
    reference = answers.pop("fastapi")
    for name, answer in answers.items():
        assert answer == reference, name
