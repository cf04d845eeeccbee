"""The job records' contract, one set of assertions run against both implementations: SQLite
(:class:`Records`, a server's worker processes sharing a state directory) and Redis
(:class:`RedisRecords`, scaled out), so that dualserve/serving/jobs.py can use either unchanged.

One redis-server for the module, emptied before each test. Races run in threads, each with a
handle of its own on the same records, as separate processes would have.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dualserve.store import Unavailable
from dualserve.store import records as sqlite_module
from dualserve.store import redis_records as redis_module
from dualserve.store.records import IdempotencyMismatch, JobRecord, Records
from dualserve.store.redis_records import RedisRecords
from tests.redis_server import redis_server

AnyRecords = Records | RedisRecords
Opener = Callable[[], AnyRecords]

STALE = 30.0
ATTEMPTS = 2
INTERRUPTED_TWICE = {"status": 500, "detail": "The job was interrupted 2 times (the server stopped)."}


def alive(owner: str) -> bool:
    return True


def dead(owner: str) -> bool:
    return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(params=["sqlite", "redis"])
def open_records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another handle on the test's records: what another process would have."""
    if request.param == "sqlite":
        yield lambda: Records(tmp_path / "jobs.sqlite3")
        return
    url = request.getfixturevalue("redis_url")
    clients: list[redis.Redis] = []

    def open_redis() -> RedisRecords:
        client = redis.Redis.from_url(url)
        clients.append(client)
        return RedisRecords(client)

    open_redis().client.flushdb()
    yield open_redis
    for client in clients:
        client.close()


@pytest.fixture
def records(open_records: Opener) -> AnyRecords:
    return open_records()


def submit(
    records: AnyRecords,
    job_id: str,
    pipeline: str = "p",
    body: str | None = None,
    expires_in: float = 60.0,
) -> JobRecord:
    record, created = records.create(job_id, pipeline, {"query": "", "body": body}, time.time() + expires_in)
    assert created
    return record


def succeed(records: AnyRecords, job_id: str, digest: str) -> None:
    assert records.take(job_id, "w", STALE, ATTEMPTS, alive) is not None
    assert records.finish(job_id, "w", "succeeded", result={"digest": digest})


def statuses(records: AnyRecords, job_id: str) -> list[str]:
    return [data["status"] for _, data in records.events(job_id)]


# --- create, get, idempotency -----------------------------------------------------------------------


def test_create_and_get(records: AnyRecords) -> None:
    before = time.time()
    record, created = records.create("a", "p", {"query": "x=1", "body": "b"}, before + 60)
    assert created
    assert (record.id, record.pipeline, record.status, record.request) == (
        "a",
        "p",
        "queued",
        {"query": "x=1", "body": "b"},
    )
    assert before <= record.created_at <= time.time()
    assert record.expires_at == before + 60  # times read back exactly as written
    assert (record.progress, record.message, record.started_at, record.ended_at) == (None, None, None, None)
    assert (record.error, record.result, record.owner, record.attempts) == (None, None, None, 0)
    assert (record.cancel, record.deleted, record.seq, record.ended) == (False, False, 1, False)
    assert records.get("a") == record
    assert records.events("a") == [(1, {"status": "queued", "progress": None, "message": None})]
    assert records.get("unknown") is None


def test_an_expired_job_is_gone_but_for_include_deleted(records: AnyRecords) -> None:
    submit(records, "a", expires_in=-1)
    assert records.get("a") is None
    found = records.get("a", include_deleted=True)
    assert found is not None and found.id == "a"


def test_the_same_key_and_body_is_the_same_job(records: AnyRecords) -> None:
    first, created = records.create("a", "p", {"body": None}, time.time() + 60, "key", "hash")
    assert created
    again, created = records.create("b", "p", {"body": None}, time.time() + 60, "key", "hash")
    assert (again, created) == (first, False)
    assert records.get("b") is None
    with pytest.raises(IdempotencyMismatch):
        records.create("c", "p", {"body": None}, time.time() + 60, "key", "other hash")
    # A key is a pipeline's: another pipeline's job under it is another job.
    elsewhere, created = records.create("d", "q", {"body": None}, time.time() + 60, "key", "other hash")
    assert created and elsewhere.id == "d"
    # No body hash twice is the same request too.
    records.create("e", "p", {"body": None}, time.time() + 60, "bare")
    same, created = records.create("f", "p", {"body": None}, time.time() + 60, "bare")
    assert (same.id, created) == ("e", False)


def test_a_canceled_jobs_key_may_be_used_again(records: AnyRecords) -> None:
    records.create("a", "p", {"body": None}, time.time() + 60, "key", "hash")
    records.cancel("a")
    record, created = records.create("b", "p", {"body": None}, time.time() + 60, "key", "other hash")
    assert (record.id, created) == ("b", True)


def test_an_expired_jobs_key_may_be_used_again(records: AnyRecords) -> None:
    records.create("a", "p", {"body": None}, time.time() - 1, "key", "hash")
    record, created = records.create("b", "p", {"body": None}, time.time() + 60, "key", "hash")
    assert (record.id, created) == ("b", True)
    # Dropping the expired job leaves the key to the job that holds it now.
    succeed(records, "a", "ra")
    assert records.expire() == ["ra"]
    record, created = records.create("c", "p", {"body": None}, time.time() + 60, "key", "hash")
    assert (record.id, created) == ("b", False)


# --- claim, heartbeat, report, finish, cancel -------------------------------------------------------


def test_claim_takes_the_oldest_of_its_pipelines(records: AnyRecords) -> None:
    for job_id, pipeline in [("a", "p"), ("b", "q"), ("c", "p"), ("d", "r")]:
        submit(records, job_id, pipeline)
    before = time.time()
    claimed = records.claim("w", ("q", "p"))
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.owner, claimed.attempts, claimed.seq) == ("a", "running", "w", 1, 2)
    assert claimed.started_at is not None and before <= claimed.started_at <= time.time()
    assert records.events("a")[-1] == (2, {"status": "running", "progress": None, "message": None})
    claimed_ids = [record.id if record else None for record in (records.claim("w", ("q",)) for _ in range(2))]
    assert claimed_ids == ["b", None]  # q has no more; d is r's, not this runner's
    claimed = records.claim("w", ("p", "q"))
    assert claimed is not None and claimed.id == "c"
    assert records.claim("w", ("p", "q")) is None
    assert records.claim("w", ()) is None
    last = records.get("d")
    assert last is not None and last.status == "queued"


def test_racing_claimers_never_take_the_same_job(records: AnyRecords, open_records: Opener) -> None:
    ids = [f"job{number}" for number in range(60)]
    for job_id in ids:
        submit(records, job_id)
    claimers = [open_records() for _ in range(4)]
    taken: list[list[str]] = [[] for _ in claimers]
    ready = threading.Barrier(len(claimers))

    def claim_all(handle: AnyRecords, owner: str, mine: list[str]) -> None:
        ready.wait()
        while (record := handle.claim(owner, ("p",))) is not None:
            mine.append(record.id)

    threads = [
        threading.Thread(target=claim_all, args=(handle, f"w{number}", mine))
        for number, (handle, mine) in enumerate(zip(claimers, taken, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for mine in taken for job_id in mine]
    assert sorted(every) == sorted(ids)  # each job once: none twice, none left


def test_heartbeat_keeps_a_running_job_its_owners(records: AnyRecords) -> None:
    submit(records, "a")
    records.claim("w", ("p",))
    records.heartbeat("w", [])
    time.sleep(0.15)
    records.heartbeat("w", ["a", "unknown"])
    assert records.recover(alive, 0.1, ATTEMPTS) == []
    time.sleep(0.15)
    records.heartbeat("someone else", ["a"])  # not the owner: no heartbeat
    assert records.recover(alive, 0.1, ATTEMPTS) == ["a"]


def test_report_records_progress_until_canceled(records: AnyRecords) -> None:
    submit(records, "a")
    assert records.report("a", 0.5, "half") is True  # queued: not running, the run should stop
    records.claim("w", ("p",))
    message = 'step "1" of 3 — é/ü\n'
    assert records.report("a", 1 / 3, message) is False
    record = records.get("a")
    assert record is not None and (record.progress, record.message, record.seq) == (1 / 3, message, 3)
    assert records.events("a", after=2) == [(3, {"status": "running", "progress": 1 / 3, "message": message})]
    assert records.report("a", None, "") is False
    assert records.events("a", after=3) == [(4, {"status": "running", "progress": None, "message": ""})]
    assert records.is_canceled("a") is False
    records.cancel("a")
    assert records.is_canceled("a") is True
    assert records.report("a", 0.9, "late") is True
    assert records.is_canceled("unknown") is True
    assert records.report("unknown", 0.1, None) is True


def test_finish_only_by_the_owner_of_a_running_job(records: AnyRecords) -> None:
    submit(records, "a")
    submit(records, "b")
    assert records.finish("a", "w", "succeeded", result={"digest": "r"}) is False  # still queued
    records.claim("w", ("p",))
    assert records.finish("a", "someone else", "succeeded", result={"digest": "r"}) is False
    records.report("a", 0.5, "half")
    before = time.time()
    assert records.finish("a", "w", "succeeded", result={"digest": "r"}) is True
    record = records.get("a")
    assert record is not None
    assert (record.status, record.result, record.error, record.progress, record.ended) == (
        "succeeded",
        {"digest": "r"},
        None,
        1.0,
        True,
    )
    assert record.ended_at is not None and before <= record.ended_at <= time.time()
    assert records.events("a")[-1] == (4, {"status": "succeeded", "progress": 1.0, "message": "half"})
    assert records.finish("a", "w", "failed", error={"status": 500, "detail": "again"}) is False

    records.claim("w", ("p",))
    assert records.finish("b", "w", "failed", error={"status": 418, "detail": "teapot"}) is True
    failed = records.get("b")
    assert failed is not None
    assert (failed.status, failed.error, failed.result, failed.progress) == (
        "failed",
        {"status": 418, "detail": "teapot"},
        None,
        None,
    )


def test_a_canceled_running_job_cannot_finish(records: AnyRecords) -> None:
    submit(records, "a")
    records.claim("w", ("p",))
    records.report("a", 0.5, "half")
    canceled = records.cancel("a")
    assert canceled is not None
    # As it was made canceled: not yet marked deleted.
    assert (canceled.status, canceled.cancel, canceled.deleted, canceled.progress) == ("canceled", True, False, None)
    assert canceled.ended_at is not None
    assert records.finish("a", "w", "succeeded", result={"digest": "r"}) is False
    assert records.get("a") is None
    kept = records.get("a", include_deleted=True)
    assert kept is not None and (kept.status, kept.deleted, kept.result) == ("canceled", True, None)
    assert statuses(records, "a") == ["queued", "running", "running", "canceled"]
    assert records.recover(dead, STALE, ATTEMPTS) == []  # no longer running


def test_cancel_a_queued_job_and_an_ended_one(records: AnyRecords) -> None:
    submit(records, "a")
    canceled = records.cancel("a")
    assert canceled is not None and (canceled.status, canceled.seq) == ("canceled", 2)
    assert records.claim("w", ("p",)) is None  # never runs
    assert records.cancel("a") is None  # deleted already
    assert records.cancel("unknown") is None

    submit(records, "b")
    succeed(records, "b", "rb")
    ended = records.cancel("b")
    assert ended is not None and (ended.status, ended.result, ended.deleted) == ("succeeded", {"digest": "rb"}, False)
    assert statuses(records, "b") == ["queued", "running", "succeeded"]
    assert records.get("b") is None


def test_events_are_numbered_from_one(records: AnyRecords) -> None:
    submit(records, "a")
    records.claim("w", ("p",))
    records.report("a", 0.25, "one")
    records.report("a", 0.5, "two")
    records.finish("a", "w", "succeeded", result={"digest": "r"})
    events = records.events("a")
    assert [seq for seq, _ in events] == [1, 2, 3, 4, 5]
    assert [data["status"] for _, data in events] == ["queued", "running", "running", "running", "succeeded"]
    assert records.events("a", after=3) == events[3:]
    assert records.events("a", after=5) == []
    assert records.events("a", after=-1) == events
    record = records.get("a")
    assert record is not None and record.seq == 5
    assert records.events("unknown") == []


# --- recover, take ----------------------------------------------------------------------------------


def test_recover_queues_a_dead_owners_job_again_then_fails_it(records: AnyRecords) -> None:
    submit(records, "a")
    submit(records, "b")
    submit(records, "c")
    records.claim("dead", ("p",))
    records.claim("live", ("p",))
    records.report("a", 0.5, "half")
    assert records.recover(lambda owner: owner == "live", STALE, ATTEMPTS) == ["a"]
    queued = records.get("a")
    assert queued is not None
    assert (queued.status, queued.owner, queued.progress, queued.message) == (
        "queued",
        None,
        None,
        "interrupted; queued again",
    )
    assert records.events("a")[-1][1] == {"status": "queued", "progress": None, "message": "interrupted; queued again"}
    running = records.get("b")
    assert running is not None and (running.status, running.owner) == ("running", "live")
    # Queued again in its place: before the job submitted after it.
    again = records.claim("dead", ("p",))
    assert again is not None and (again.id, again.attempts) == ("a", 2)
    assert records.recover(lambda owner: owner == "live", STALE, ATTEMPTS) == ["a"]
    failed = records.get("a")
    assert failed is not None
    assert (failed.status, failed.error, failed.owner) == ("failed", INTERRUPTED_TWICE, None)
    assert failed.ended_at is not None
    assert statuses(records, "a")[-1] == "failed"
    assert records.finish("a", "dead", "succeeded", result={"digest": "r"}) is False


def test_recover_takes_a_stale_heartbeat_for_a_dead_owner(records: AnyRecords) -> None:
    submit(records, "a")
    records.claim("w", ("p",))
    assert records.recover(alive, STALE, ATTEMPTS) == []
    assert records.recover(alive, 0.0, ATTEMPTS) == ["a"]


def test_take_starts_a_queued_job(records: AnyRecords) -> None:
    submit(records, "a")
    before = time.time()
    taken = records.take("a", "w", STALE, ATTEMPTS, alive)
    assert taken is not None
    assert (taken.id, taken.status, taken.owner, taken.attempts, taken.seq) == ("a", "running", "w", 1, 2)
    assert taken.started_at is not None and before <= taken.started_at <= time.time()
    assert records.take("a", "w2", STALE, ATTEMPTS, alive) is None  # its owner lives, its heartbeat is fresh
    assert records.claim("w", ("p",)) is None
    assert records.finish("a", "w", "succeeded", result={"digest": "r"}) is True


@pytest.mark.parametrize("state", ["unknown", "succeeded", "failed", "canceled", "expired-and-dropped"])
def test_take_leaves_what_is_not_to_run(records: AnyRecords, state: str) -> None:
    if state != "unknown":
        submit(records, "a", expires_in=-1 if state == "expired-and-dropped" else 60)
    if state in ("succeeded", "failed", "expired-and-dropped"):
        records.take("a", "w", STALE, ATTEMPTS, alive)
        records.finish("a", "w", "failed" if state == "failed" else "succeeded", result={"digest": "r"})
    if state == "canceled":
        records.cancel("a")
    if state == "expired-and-dropped":
        records.expire()
    before = records.get("a", include_deleted=True)
    assert records.take("a", "w2", STALE, ATTEMPTS, dead) is None
    assert records.get("a", include_deleted=True) == before


def test_take_over_a_job_whose_worker_died(records: AnyRecords) -> None:
    submit(records, "a")
    records.take("a", "killed", STALE, ATTEMPTS, alive)
    records.report("a", 0.5, "half")
    taken = records.take("a", "w", STALE, ATTEMPTS, lambda owner: owner != "killed")
    assert taken is not None
    assert (taken.status, taken.owner, taken.attempts, taken.progress) == ("running", "w", 2, None)
    assert records.events("a")[-1][0] == taken.seq == 4
    assert records.finish("a", "killed", "succeeded", result={"digest": "r"}) is False  # no longer its job
    # Its heartbeat now stale (older than 0 s), after two interrupted runs: it fails.
    assert records.take("a", "w3", 0.0, ATTEMPTS, alive) is None
    failed = records.get("a")
    assert failed is not None
    assert (failed.status, failed.error, failed.owner, failed.attempts) == ("failed", INTERRUPTED_TWICE, None, 2)
    assert records.finish("a", "w", "succeeded", result={"digest": "r"}) is False


def test_two_takes_of_a_queued_job_one_wins(records: AnyRecords, open_records: Opener) -> None:
    ids = [f"job{number}" for number in range(30)]
    for job_id in ids:
        submit(records, job_id)
    takers = [open_records(), open_records()]
    won: list[list[str]] = [[], []]
    ready = threading.Barrier(2)

    def take_all(handle: AnyRecords, owner: str, mine: list[str]) -> None:
        ready.wait()
        for job_id in ids:
            if handle.take(job_id, owner, STALE, ATTEMPTS, alive) is not None:
                mine.append(job_id)

    threads = [
        threading.Thread(target=take_all, args=(takers[0], "w0", won[0])),
        threading.Thread(target=take_all, args=(takers[1], "w1", won[1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won[0] + won[1]) == sorted(ids)
    for job_id in ids:
        record = records.get(job_id)
        assert record is not None and record.attempts == 1
        assert record.owner == ("w0" if job_id in won[0] else "w1")


# --- expiry and the digests the records refer to -----------------------------------------------------


def test_expire_drops_ended_jobs_past_their_lifetime(records: AnyRecords) -> None:
    submit(records, "ended", body="b-ended", expires_in=-1)
    succeed(records, "ended", "r-ended")
    submit(records, "failed", expires_in=-1)  # no body, no result: no digest
    records.take("failed", "w", STALE, ATTEMPTS, alive)
    records.finish("failed", "w", "failed", error={"status": 500, "detail": "no"})
    submit(records, "queued", body="b-queued", expires_in=-1)  # still to run: kept
    submit(records, "young", body="b-young")
    succeed(records, "young", "r-young")

    assert sorted(records.expire()) == ["b-ended", "r-ended"]
    assert records.get("ended", include_deleted=True) is None
    assert records.get("failed", include_deleted=True) is None
    assert records.events("ended") == []
    assert {job_id for job_id in ("queued", "young") if records.get(job_id, include_deleted=True)} == {
        "queued",
        "young",
    }
    assert records.expire() == []
    assert records.cancel("ended") is None


def test_a_deleted_job_is_dropped_after_the_grace(records: AnyRecords, monkeypatch: pytest.MonkeyPatch) -> None:
    submit(records, "a", body="b-a")
    records.cancel("a")
    assert records.expire() == []  # its final event stays to be read meanwhile
    assert statuses(records, "a")[-1] == "canceled"
    monkeypatch.setattr(sqlite_module, "DELETED_GRACE", 0.0)
    monkeypatch.setattr(redis_module, "DELETED_GRACE", 0.0)
    assert records.expire() == ["b-a"]
    assert records.get("a", include_deleted=True) is None
    assert records.events("a") == []


def test_digests_in_use(records: AnyRecords) -> None:
    assert records.digests_in_use() == set()
    submit(records, "a", body="b-a")
    succeed(records, "a", "r-a")
    submit(records, "b")
    submit(records, "c", body="b-c")
    records.cancel("c")  # deleted, but its record is still there
    assert records.digests_in_use() == {"b-a", "r-a", "b-c"}


def test_pending_digests_are_those_of_queued_and_running_jobs(records: AnyRecords) -> None:
    submit(records, "queued", body="b-queued")
    submit(records, "running", pipeline="q", body="b-running")
    records.claim("w", ("q",))
    submit(records, "ended", body="b-ended")
    succeed(records, "ended", "r-ended")
    submit(records, "canceled", body="b-canceled")
    records.cancel("canceled")
    submit(records, "bodiless")
    assert records.pending_digests() == {"b-queued", "b-running"}


# --- Redis out of reach -----------------------------------------------------------------------------


def test_redis_out_of_reach_is_unavailable(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        records = RedisRecords(client)
        submit(records, "a", body="b")
        server.stop()
        calls: list[Callable[[], object]] = [
            lambda: records.create("b", "p", {"body": None}, time.time() + 60),
            lambda: records.get("a"),
            lambda: records.claim("w", ("p",)),
            lambda: records.heartbeat("w", ["a"]),
            lambda: records.report("a", 0.5, None),
            lambda: records.is_canceled("a"),
            lambda: records.finish("a", "w", "succeeded", result={"digest": "r"}),
            lambda: records.cancel("a"),
            lambda: records.recover(alive, STALE, ATTEMPTS),
            lambda: records.take("a", "w", STALE, ATTEMPTS, alive),
            lambda: records.events("a"),
            lambda: records.expire(),
            lambda: records.digests_in_use(),
            lambda: records.pending_digests(),
        ]
        try:
            for call in calls:
                with pytest.raises(Unavailable) as raised:
                    call()
                assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
        finally:
            client.close()


def test_counts_are_the_live_jobs_by_status(records: AnyRecords) -> None:
    assert records.counts() == {}
    submit(records, "q1")
    submit(records, "q2")
    submit(records, "gone", expires_in=-1)  # expired: not counted
    submit(records, "c")
    records.cancel("c")  # deleted: not counted
    taken = records.claim("me", ("p",))
    assert taken is not None
    assert records.counts() == {"queued": 1, "running": 1}
    assert records.finish(taken.id, "me", "succeeded", result={"digest": "d" * 64})
    assert records.counts() == {"queued": 1, "succeeded": 1}
