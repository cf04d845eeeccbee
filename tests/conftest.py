"""Every frontend as an ``httpx2.Client``, so one set of assertions runs against all four; and the
two tiers, fast and `server` (see "Tiers" below)."""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import shutil
import subprocess
import tempfile
import types
import wsgiref.validate
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

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

# Job records and stored results of every test, and of the servers the tests start, in a folder of
# their own, never the working directory's .dualserve.
_STATE = tempfile.mkdtemp(prefix="dualserve-test-state-")
os.environ["DUALSERVE_STATE_DIR"] = _STATE
atexit.register(shutil.rmtree, _STATE, True)

FRONTENDS = ["fastapi", "flask", "flask-in-fastapi", "fastapi-in-flask"]
#: The Flask app with a request hook, so every request goes through Flask's own dispatch: the
#: answers must not change when GET and HEAD on /<name>/run stop skipping it.
DISPATCHED = "flask-dispatched"
# Headers a server adds on its own, that carry the time, or that name the request (X-Request-ID:
# made anew for each; tests/test_edge.py checks it).
VOLATILE = {"date", "server", "connection", "keep-alive", "transfer-encoding", "x-request-id"}

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


# --- Tiers --------------------------------------------------------------------------------------
# Two tiers, by the `server` marker. `pytest -m "not server"` (make test-fast) is the fast tier: in
# this process, examples only, well under a minute. `pytest -m server` is the rest, marked here, not
# by hand:
# - every test that starts another process (a server through tests/servers.py, Chromium, the CLI, a
#   child Python): its function or a fixture it uses (item.fixturenames is the whole closure; a
#   fixture that calls request.getfixturevalue, any fixture it names or is parametrized with) refers
#   to a way of starting one, directly or through the code in tests/ it refers to (helpers, classes,
#   tests/servers.py). The guard at the end fails a test left in the fast tier that starts one anyway.
# - every Hypothesis search (@given, Schemathesis): in-process, but they were 60% of the fast tier.

_PROCESS_MODULES = ("subprocess", "multiprocessing", "concurrent.futures.process", "asyncio.subprocess", "playwright")
_PROCESS_FUNCTIONS = {
    getattr(os, name)
    for name in dir(os)
    if name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp")
    or name.startswith(("exec", "spawn"))
}


def _is_ours(module: str) -> bool:
    return module == "tests" or module.startswith("tests.") or module == "conftest"


def _starts_by_module(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in _PROCESS_MODULES)


def _codes(target: object) -> Iterator[tuple[types.CodeType, dict[str, Any], list[object]]]:
    """Each function behind ``target`` (decorators unwrapped, @given's test too): its code, its
    globals and what its closure holds."""
    functions = [target]
    with contextlib.suppress(ValueError):  # a __wrapped__ that never ends (a mock, say)
        functions.append(inspect.unwrap(target))  # type: ignore[arg-type]
    inner = getattr(getattr(target, "hypothesis", None), "inner_test", None)
    if inner is not None:
        functions.append(inner)
    for function in functions:
        code = getattr(function, "__code__", None)
        if isinstance(code, types.CodeType):
            cells = [cell.cell_contents for cell in getattr(function, "__closure__", None) or () if _filled(cell)]
            yield code, getattr(function, "__globals__", {}), cells


def _constants(code: types.CodeType) -> Iterator[object]:
    """The names ``code`` loads (globals, attributes) and its constants, its nested functions' too."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _constants(constant)
        else:
            yield constant


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _starts_processes(target: object, seen: set[int]) -> bool:
    """Whether calling ``target`` may start a process, as far as its code and ours (tests/) show."""
    if id(target) in seen:
        return False
    seen.add(id(target))
    if isinstance(target, types.ModuleType):
        return _starts_by_module(target.__name__)
    if isinstance(target, types.BuiltinFunctionType) and target in _PROCESS_FUNCTIONS:
        return True
    module = getattr(target, "__module__", None)
    if not isinstance(module, str) or not _is_ours(module):
        return isinstance(module, str) and _starts_by_module(module)
    if isinstance(target, type):
        members = [
            getattr(member, "__func__", None) or getattr(member, "fget", None) or member
            for member in vars(target).values()
        ]
        return any(_starts_processes(member, seen) for member in members if callable(member))
    for code, scope, cells in _codes(target):
        names = {name for name in _constants(code) if isinstance(name, str)}
        for referred in [*(scope[name] for name in names if name in scope), *cells]:
            if isinstance(referred, types.ModuleType) and _is_ours(referred.__name__):
                # `servers.running(...)`: the members of ours that the code names.
                members = [getattr(referred, name) for name in names if hasattr(referred, name)]
                if any(_starts_processes(member, seen) for member in members):
                    return True
            elif _starts_processes(referred, seen):
                return True
    return False


_VERDICTS: dict[int, tuple[object, bool]] = {}


def _verdict(target: object) -> bool:
    """``_starts_processes`` once per function: fixtures are shared by many tests."""
    cached = _VERDICTS.get(id(target))
    if cached is None or cached[0] is not target:
        cached = (target, _starts_processes(target, set()))
        _VERDICTS[id(target)] = cached
    return cached[1]


def _asked_by_name(target: object, params: Sequence[object] | None) -> set[str] | None:
    """The fixture names ``target`` may pass to request.getfixturevalue (the strings in its code and
    its params), or None if it calls no getfixturevalue."""
    found: set[str] | None = None
    for code, _scope, _cells in _codes(target):
        constants = list(_constants(code))
        if "getfixturevalue" in constants:
            found = (found or set()) | {name for name in [*constants, *(params or ())] if isinstance(name, str)}
    return found


def _uses_a_process(item: pytest.Function) -> bool:
    manager = item.session._fixturemanager
    definitions = item._fixtureinfo.name2fixturedefs
    # Every definition of each name: an override may still ask for the fixture it overrides.
    queue: list[tuple[object, Sequence[object] | None]] = [(item.function, None)]
    queue += [
        (definition.func, definition.params) for name in item.fixturenames for definition in definitions.get(name, ())
    ]
    done: set[int] = set()
    while queue:
        target, params = queue.pop()
        if id(target) in done:
            continue
        done.add(id(target))
        if _verdict(target):
            return True
        asked = _asked_by_name(target, params)
        if asked is not None:
            found = [definition for name in asked for definition in manager.getfixturedefs(name, item) or ()]
            if not found:
                return True  # asks for fixtures by names it computes: assume the worst
            queue += [(definition.func, definition.params) for definition in found]
    return False


def _searches(item: pytest.Function) -> bool:
    """A Hypothesis search: @given keeps its handle on the test, and so do Schemathesis' tests."""
    return getattr(item.function, "hypothesis", None) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("server") is not None:
            continue
        if _searches(item) or _uses_a_process(item):
            item.add_marker(pytest.mark.server)


_fast_test: str | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    global _fast_test
    _fast_test = item.nodeid if item.get_closest_marker("server") is None else None
    try:
        return (yield)
    finally:
        _fast_test = None


def _guarded_execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
    if _fast_test is not None:
        raise RuntimeError(
            f"{_fast_test} starts a process ({args!r}) but is not marked `server`: tests/conftest.py's"
            " pytest_collection_modifyitems did not see it coming; mark the test @pytest.mark.server"
        )
    return _execute_child(self, args, *rest, **kwargs)


# Every way to a child process in the subprocess module, and asyncio's, goes through _execute_child.
_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
subprocess.Popen._execute_child = _guarded_execute_child  # type: ignore[attr-defined]
