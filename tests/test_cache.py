"""``@cached`` and ``cache_ttl``: answers served from the store, and single flight, on every frontend.

Each test has a service of its own over a state directory of its own, and wrappers that count
their runs; one set of assertions runs against every frontend (tests/conftest.py FRONTENDS).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from starlette.testclient import TestClient

import dualserve
from dualserve import BasePipelineWrapper, HTTPError, UploadFile, cached, produces
from dualserve.frontends import fastapi as fastapi_adapter
from dualserve.serving import cache as cache_module
from dualserve.serving.pipelines import Registry
from dualserve.serving.service import Service
from dualserve.store.cache import CACHE_FILE, CacheEntries
from dualserve.store.sqlite import new_owner
from tests.conftest import FRONTENDS, frontend_client


class Counter:
    def __init__(self) -> None:
        self.runs: list[Any] = []
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        with self._lock:
            self.runs.append(value)

    def __len__(self) -> int:
        return len(self.runs)


class Slow(BasePipelineWrapper):
    """Takes its time, and every run's bytes differ: a second run would show."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.counter = Counter()
        self.seconds = seconds

    @cached(ttl=60)
    def run_api(self, text: str = "hello", fail: str = "") -> bytes:
        return self.make(text, fail)

    def make(self, text: str, fail: str) -> bytes:
        self.counter.add(text)
        time.sleep(self.seconds)
        if fail == "http":
            raise HTTPError(503, "busy")
        if fail == "crash":
            raise RuntimeError("broken")
        return f"{text} {time.time()} {len(self.counter)}\n".encode() * 50


def timed(ttl: float, seconds: float = 0) -> Slow:
    """A :class:`Slow` cached for ``ttl`` seconds."""

    class Timed(Slow):
        @cached(ttl=ttl)
        def run_api(self, text: str = "hello", fail: str = "") -> bytes:
            return self.make(text, fail)

    return Timed(seconds)


class AsyncSlow(BasePipelineWrapper):
    def __init__(self) -> None:
        self.counter = Counter()

    @cached(ttl=60)
    async def run_api(self, text: str = "hello") -> bytes:
        self.counter.add(text)
        await asyncio.sleep(0.3)
        return f"{text} {time.time()}\n".encode() * 50


class Picture(BasePipelineWrapper):
    def __init__(self) -> None:
        self.counter = Counter()

    @cached(ttl=60)
    @produces("image/png", "image/webp")
    def run_api(self, size: int = 8) -> Image.Image:
        self.counter.add(size)
        return Image.new("RGB", (size, size), (len(self.counter) * 40 % 256, 0, 0))


class Streamed(BasePipelineWrapper):
    def __init__(self) -> None:
        self.counter = Counter()

    @cached(ttl=60)
    def run_api(self, parts: int = 3) -> Iterator[bytes]:
        self.counter.add(parts)
        for index in range(parts):
            yield f"part {index} of run {len(self.counter)}\n".encode()


class AsyncStreamed(BasePipelineWrapper):
    def __init__(self) -> None:
        self.counter = Counter()

    @cached(ttl=60)
    async def run_api(self, parts: int = 3) -> AsyncIterator[bytes]:
        self.counter.add(parts)
        for index in range(parts):
            await asyncio.sleep(0)
            yield f"part {index} of run {len(self.counter)}\n".encode()


class Uploaded(BasePipelineWrapper):
    def __init__(self) -> None:
        self.counter = Counter()

    @cached(ttl=60)
    def run_api(self, file: UploadFile, label: str = "x") -> bytes:
        content = file.read()
        self.counter.add(content)
        return label.encode() + b":" + content + f" {len(self.counter)}".encode()


class Plain(BasePipelineWrapper):
    """Not decorated: cached only by the service's cache_ttl."""

    def __init__(self) -> None:
        self.counter = Counter()

    def run_api(self, text: str = "hello") -> str:
        self.counter.add(text)
        return f"{text} {time.time()} {len(self.counter)}"


def make_service(tmp_path: Path, cache_ttl: float | None = None, **wrappers: Any) -> Service:
    return Service(Registry.from_wrappers(wrappers), state_dir=tmp_path / "state", cache_ttl=cache_ttl)


@pytest.fixture(params=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def client_for(frontend: str, service: Service) -> httpx2.Client:
    return frontend_client(frontend, service)


def concurrently(count: int, send: Any) -> list[httpx2.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


# --- runs once -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_cached_pipeline_runs_once_for_every_kind_of_request(frontend: str, kind: str, tmp_path: Path) -> None:
    wrapper = Slow() if kind == "sync" else AsyncSlow()
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        answers = concurrently(20, lambda: client.get("/slow/run", params={"text": "a"}))
        assert len(wrapper.counter) == 1
        first = answers[0]
        assert {answer.status_code for answer in answers} == {200}
        assert {answer.content for answer in answers} == {first.content}
        assert {answer.headers["etag"] for answer in answers} == {first.headers["etag"]}
        assert first.headers["accept-ranges"] == "bytes"

        again = client.get("/slow/run", params={"text": "a"})
        assert (again.content, again.headers["etag"]) == (first.content, first.headers["etag"])
        assert again.headers["age"] == "0"
        posted = client.post("/slow/run", json={"text": "a"})  # the same arguments from a body
        assert posted.content == first.content

        head = client.head("/slow/run", params={"text": "a"})
        assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", first.headers["etag"])
        assert head.headers["content-length"] == str(len(first.content))

        unchanged = client.get("/slow/run", params={"text": "a"}, headers={"if-none-match": first.headers["etag"]})
        assert (unchanged.status_code, unchanged.content) == (304, b"")

        part = client.get("/slow/run", params={"text": "a"}, headers={"range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, first.content[10:20])
        resumed = client.get(
            "/slow/run", params={"text": "a"}, headers={"range": "bytes=100-", "if-range": first.headers["etag"]}
        )
        assert (resumed.status_code, resumed.content) == (206, first.content[100:])
        assert len(wrapper.counter) == 1


@pytest.mark.parametrize("method", ["HEAD", "GET-conditional", "GET-range"])
def test_the_first_request_may_be_any_kind(frontend: str, method: str, tmp_path: Path) -> None:
    # The leader's answer is stored whole whatever it asked for, then rendered for its request.
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        if method == "HEAD":
            first = client.head("/slow/run")
            assert (first.status_code, first.content) == (200, b"")
        elif method == "GET-conditional":
            first = client.get("/slow/run", headers={"if-none-match": '"nothing-like-it"'})
            assert first.status_code == 200
        else:
            first = client.get("/slow/run", headers={"range": "bytes=0-4"})
            assert (first.status_code, len(first.content)) == (206, 5)
        whole = client.get("/slow/run")
        assert whole.headers["etag"] == first.headers["etag"]
        assert whole.headers["content-length"] == str(len(whole.content)) and len(whole.content) > 5
        assert "age" not in first.headers and whole.headers["age"] == "0"
        assert len(wrapper.counter) == 1


def test_answers_are_byte_identical_across_frontends(tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for("fastapi", service) as client:
        client.get("/slow/run", params={"text": "same"})  # stored; every frontend then answers from the store
    answers = set()
    for name in FRONTENDS:
        with client_for(name, service) as client:
            response = client.get("/slow/run", params={"text": "same"})
            headers = tuple(
                sorted(h for h in response.headers.items() if h[0] not in ("date", "server", "x-request-id"))
            )
            answers.add((response.status_code, headers, response.content))
    assert len(answers) == 1
    assert len(wrapper.counter) == 1


# --- what makes another entry ------------------------------------------------------------------------


def test_different_arguments_are_different_entries(frontend: str, tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        a = client.get("/slow/run", params={"text": "a"})
        b = client.get("/slow/run", params={"text": "b"})
        default = client.get("/slow/run")
        explicit = client.get("/slow/run", params={"text": "hello"})  # the default, validated alike
        assert a.content != b.content and default.content == explicit.content
        assert wrapper.counter.runs == ["a", "b", "hello"]


def test_different_representations_are_different_entries(frontend: str, tmp_path: Path) -> None:
    wrapper = Picture()
    service = make_service(tmp_path, picture=wrapper)
    with client_for(frontend, service) as client:
        png = client.get("/picture/run", headers={"accept": "image/png"})
        webp = client.get("/picture/run", headers={"accept": "image/webp"})
        chosen = client.get("/picture/run", params={"format": "webp"}, headers={"accept": "image/png"})
        as_json = client.get("/picture/run", headers={"accept": "application/json"})
        assert png.headers["content-type"] == "image/png" and webp.headers["content-type"] == "image/webp"
        assert chosen.headers["content-type"] == "image/webp"
        assert as_json.json()["media_type"] == "image/png"
        assert len(wrapper.counter) == 4
        again = client.get("/picture/run", headers={"accept": "image/webp"})
        assert (again.content, again.headers["etag"]) == (webp.content, webp.headers["etag"])
        assert again.headers["vary"] == "Accept"
        assert len(wrapper.counter) == 4


def test_uploads_are_keyed_by_their_content(frontend: str, tmp_path: Path) -> None:
    wrapper = Uploaded()
    service = make_service(tmp_path, uploaded=wrapper)
    with client_for(frontend, service) as client:

        def send(content: bytes) -> httpx2.Response:
            return client.post("/uploaded/run", files={"file": ("a.bin", io.BytesIO(content))}, data={"label": "y"})

        first = send(b"one")
        assert first.status_code == 200, first.text
        assert send(b"one").content == first.content == b"y:one 1"
        assert send(b"two").content == b"y:two 2"
        assert wrapper.counter.runs == [b"one", b"two"]


# --- what is not kept --------------------------------------------------------------------------------


@pytest.mark.parametrize(("fail", "status"), [("http", 503), ("crash", 500)])
def test_errors_are_not_cached(frontend: str, fail: str, status: int, tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        for _ in range(3):
            answer = client.get("/slow/run", params={"fail": fail})
            assert answer.status_code == status and "age" not in answer.headers
        assert len(wrapper.counter) == 3
        assert client.get("/slow/run", params={"text": "ok"}).status_code == 200


def test_a_failed_leader_lets_the_next_request_run(frontend: str, tmp_path: Path) -> None:
    wrapper = Slow(seconds=0.3)
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        answers = concurrently(5, lambda: client.get("/slow/run", params={"fail": "http"}))
        # Each waiting request ran after the one before failed: none was answered from the store.
        assert [answer.status_code for answer in answers] == [503] * 5
        assert len(wrapper.counter) == 5


# --- streams ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_is_stored_whole(frontend: str, kind: str, tmp_path: Path) -> None:
    wrapper = Streamed() if kind == "sync" else AsyncStreamed()
    service = make_service(tmp_path, stream=wrapper)
    with client_for(frontend, service) as client:
        first = client.get("/stream/run")
        assert first.content == b"part 0 of run 1\npart 1 of run 1\npart 2 of run 1\n"
        assert first.headers["content-length"] == str(len(first.content))
        assert first.headers["accept-ranges"] == "bytes"
        part = client.get("/stream/run", headers={"range": "bytes=5-"})
        assert (part.status_code, part.content) == (206, first.content[5:])
        assert len(wrapper.counter) == 1


# --- lifetimes ---------------------------------------------------------------------------------------


def test_age_and_expiry(frontend: str, tmp_path: Path) -> None:
    wrapper = timed(1.5)
    service = make_service(tmp_path, slow=wrapper)
    with client_for(frontend, service) as client:
        first = client.get("/slow/run")
        time.sleep(1.05)
        aged = client.get("/slow/run")
        assert aged.headers["age"] == "1" and aged.content == first.content
        time.sleep(0.5)
        fresh = client.get("/slow/run")
        assert fresh.content != first.content and "age" not in fresh.headers
        assert len(wrapper.counter) == 2


def test_cache_ttl_caches_a_pipeline_without_the_decorator(frontend: str, tmp_path: Path) -> None:
    plain = Plain()
    decorated = timed(0.5)
    service = make_service(tmp_path, cache_ttl=60, plain=plain, slow=decorated)
    with client_for(frontend, service) as client:
        first = client.get("/plain/run")
        assert client.get("/plain/run").content == first.content
        assert len(plain.counter) == 1
        # The wrapper's own @cached wins: its half second, not the service's minute.
        client.get("/slow/run")
        time.sleep(0.6)
        client.get("/slow/run")
        assert len(decorated.counter) == 2


def test_without_cache_ttl_an_undecorated_pipeline_runs_every_time(tmp_path: Path) -> None:
    plain = Plain()
    service = make_service(tmp_path, plain=plain)
    with client_for("fastapi", service) as client:
        client.get("/plain/run")
        client.get("/plain/run")
    assert len(plain.counter) == 2
    assert not (tmp_path / "state" / CACHE_FILE).exists()  # no store opened for it


# --- routes, jobs and the store ----------------------------------------------------------------------


def test_a_legacy_route_shares_the_entry(tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    app = fastapi_adapter.create_app(service)
    app.add_pipeline_route("/legacy/{text}", "slow", methods=("GET",))
    with TestClient(app) as client:
        legacy = client.get("/legacy/abc")
        assert legacy.status_code == 200
        assert client.get("/slow/run", params={"text": "abc"}).content == legacy.content
        assert client.head("/legacy/abc").headers["etag"] == legacy.headers["etag"]
    assert wrapper.counter.runs == ["abc"]


def test_another_process_claim_is_waited_for_and_a_dead_owner_s_is_taken_over(tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for("fastapi", service) as client:
        first = client.get("/slow/run")
        entries = CacheEntries(tmp_path / "state" / CACHE_FILE)  # what another worker process sees
        (key,) = _keys(entries)
        _expire(entries, key)  # the next request must run again

        # Another live process claims the key: the request waits for it, and runs once it gives up.
        other = new_owner()
        assert entries.claim(key, other, 60) is True
        waiting = ThreadPoolExecutor(1).submit(client.get, "/slow/run")
        time.sleep(0.4)
        assert not waiting.done() and len(wrapper.counter) == 1
        entries.release(key, other)
        second = waiting.result(timeout=10)
        assert second.status_code == 200 and second.content != first.content
        assert len(wrapper.counter) == 2

        # A claim whose process is gone is taken over at once.
        _expire(entries, key)
        host = other.split(":")[0]
        assert entries.claim(key, f"{host}:{2**22 + 99}:dead", 60) is True  # above Linux's largest pid
        third = client.get("/slow/run")
        assert third.status_code == 200 and len(wrapper.counter) == 3


def _expire(entries: CacheEntries, key: str) -> None:
    with entries._write() as db:
        db.execute("UPDATE cache SET expires_at = 0 WHERE key = ?", (key,))


def test_a_live_entry_is_never_replaced(tmp_path: Path) -> None:
    # Two runs of one key (a claim taken over as stale): the first stored is the one answer.
    entries = CacheEntries(tmp_path / CACHE_FILE)
    first, unused = entries.put("k", "p", "{}", "a" * 64, 1.0, time.time() + 60)
    assert (first.digest, unused) == ("a" * 64, None)
    second, unused = entries.put("k", "p", "{}", "b" * 64, 2.0, time.time() + 60)
    assert (second, unused) == (first, "b" * 64)
    _expire(entries, "k")
    third, unused = entries.put("k", "p", "{}", "c" * 64, 3.0, time.time() + 60)
    assert (third.digest, unused) == ("c" * 64, "a" * 64)


def _keys(entries: CacheEntries) -> set[str]:
    return {row["key"] for row in entries._connection().execute("SELECT key FROM cache")}


def test_expired_entries_and_their_blobs_are_collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = timed(0.2)
    service = make_service(tmp_path, slow=wrapper)
    with client_for("fastapi", service) as client:
        client.get("/slow/run", params={"text": "old"})
        old_digest = _digests(service)
        time.sleep(0.3)
        monkeypatch.setattr(cache_module, "COLLECT_EVERY", 0.0)
        client.get("/slow/run", params={"text": "new"})  # a leader collects
        digests = _digests(service)
    assert len(old_digest) == 1 and len(digests) == 1 and digests != old_digest
    (old,) = old_digest
    assert not service.cache.blobs.exists(old)
    assert service.cache.blobs.exists(next(iter(digests)))


def _digests(service: Service) -> set[str]:
    return service.cache.entries.digests_in_use()


def test_job_collection_keeps_blobs_of_cached_answers(tmp_path: Path) -> None:
    wrapper = Slow(seconds=0)
    service = make_service(tmp_path, slow=wrapper)
    with client_for("fastapi", service) as client:
        answer = client.get("/slow/run")
        submitted = client.post("/slow/jobs", json={})  # answered from the cache: the same blob
        job = submitted.json()
        for _ in range(100):
            job = client.get(f"/jobs/{job['id']}").json()
            if job["status"] == "succeeded":
                break
            time.sleep(0.05)
        assert job["status"] == "succeeded"
        assert client.get(f"/jobs/{job['id']}/result").content == answer.content
        client.delete(f"/jobs/{job['id']}")
        service.jobs._collect()  # the job's record goes; its blob is the cached answer's
        again = client.get("/slow/run")
        assert again.status_code == 200 and again.content == answer.content
    assert len(wrapper.counter) == 1


# --- the decorator -----------------------------------------------------------------------------------


def test_cached_is_exported_and_checks_its_ttl() -> None:
    assert dualserve.cached is cached
    with pytest.raises(TypeError, match="@cached"):
        cached(lambda: None)  # type: ignore[arg-type]
    for bad in (0, -1, float("nan"), float("inf"), "60", True):
        with pytest.raises(ValueError, match="ttl"):
            cached(ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_ttl"):
        Service(Registry.from_wrappers({}), cache_ttl=0)


def test_the_environment_sets_cache_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualserve.exceptions import LoadError
    from dualserve.serving.config import CACHE_TTL_ENV, settings

    monkeypatch.setenv(CACHE_TTL_ENV, "30")
    assert settings()["cache_ttl"] == 30.0
    monkeypatch.setenv(CACHE_TTL_ENV, "soon")
    with pytest.raises(LoadError, match=CACHE_TTL_ENV):
        settings()


def test_the_cli_refuses_a_cache_ttl_of_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import os

    from dualserve.cli import main

    monkeypatch.setattr(os, "environ", dict(os.environ))  # main() sets the servers' variables
    with pytest.raises(SystemExit):
        main(["run", "--pipelines-dir", str(tmp_path), "--cache-ttl", "0"])
    assert "--cache-ttl must be above 0" in capsys.readouterr().err
