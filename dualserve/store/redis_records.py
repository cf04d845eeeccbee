"""Job records in Redis: the same records as :class:`~dualserve.store.records.Records`, for a
scaled-out service (Celery workers, a Redis broker) whose API processes and workers share no disk.

Job state lives here, so every API process answers for every job; results stay in the blob store.
Same methods, same answers as the SQLite records, so :mod:`dualserve.serving.jobs` uses either.

Keys, under ``prefix`` (``dualserve:``)::

    job:{id}                  hash: the record's fields (a field that is None is absent)
    events:{id}               list: the job's events as JSON; event ``seq`` is at index seq - 1
    jobs                      set: every job id (what ``digests_in_use`` reads)
    pipelines                 set: every pipeline that had a job (to find the queues)
    queued:{pipeline}         sorted set: the queued jobs by ``created_at`` (what ``claim`` takes)
    running                   set: the running jobs (what ``recover`` looks at)
    ended                     sorted set: the ended jobs by ``expires_at`` (what ``expire`` drops)
    deleted                   sorted set: the deleted jobs by ``ended_at`` (dropped after the grace)
    idem:{pipeline}:{key}     string: the id of the job an ``Idempotency-Key`` names

Every change is one Lua script, which Redis runs alone: two processes never claim the same job,
and a record and its indexes never disagree. A decision that needs Python (is the owner alive?)
is made on a read, then applied by a script only if the job still stands as read (or read again).
Expiry is ``expire``'s, not Redis's key TTLs: it must answer the digests of what it drops.

A timestamp crosses into Lua as the text of Python's float and is stored as that text (Lua's own
number-to-text conversion keeps 14 digits), so every time reads back exactly as written.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.commands.core import Script

from . import Unavailable
from .records import DELETED_GRACE, IdempotencyMismatch, JobRecord

__all__ = ["RedisRecords"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Shared by every script. ARGV[1] is the prefix, ARGV[2] the time. An optional value arrives as ''
# for None or as '=' and the value, so that an empty string stays one (see _some).
_PRELUDE = """
local P, NOW = ARGV[1], ARGV[2]
local function job(id) return P .. 'job:' .. id end
local function opt(value) if value == '' then return false end return string.sub(value, 2) end
local function put(key, field, value)
  if value then redis.call('HSET', key, field, value) else redis.call('HDEL', key, field) end
end
-- The job as it now stands, numbered: what /jobs/{id}/events sends. Progress is kept as JSON text.
local function event(id)
  local key = job(id)
  redis.call('HINCRBY', key, 'seq', 1)
  local f = redis.call('HMGET', key, 'status', 'progress', 'message')
  local message = 'null'
  if f[3] then message = cjson.encode(f[3]) end
  redis.call('RPUSH', P .. 'events:' .. id,
    '{"status": ' .. cjson.encode(f[1]) .. ', "progress": ' .. (f[2] or 'null') .. ', "message": ' .. message .. '}')
end
local function start(id, owner)
  local key = job(id)
  redis.call('ZREM', P .. 'queued:' .. redis.call('HGET', key, 'pipeline'), id)
  redis.call('SADD', P .. 'running', id)
  redis.call('HSET', key, 'status', 'running', 'owner', owner, 'started_at', NOW, 'heartbeat_at', NOW)
  redis.call('HINCRBY', key, 'attempts', 1)
  event(id)
  return redis.call('HGETALL', key)
end
local function ended(id)
  redis.call('SREM', P .. 'running', id)
  redis.call('ZADD', P .. 'ended', redis.call('HGET', job(id), 'expires_at'), id)
end
"""

# ARGV: id, pipeline, request, expires_at, idempotency key?, body hash?
_CREATE = """
local id, pipeline = ARGV[3], ARGV[4]
local idem, body_hash = opt(ARGV[7]), opt(ARGV[8])
if idem then
  local idem_key = P .. 'idem:' .. pipeline .. ':' .. idem
  local held = redis.call('GET', idem_key)
  if held then
    local f = redis.call('HMGET', job(held), 'deleted', 'expires_at', 'body_hash')
    if f[1] == '0' and tonumber(f[2]) > tonumber(NOW) then
      if f[3] ~= body_hash then return {'mismatch'} end
      return {'held', redis.call('HGETALL', job(held))}
    end
  end
  -- An expired or deleted job's key may be used again.
  redis.call('SET', idem_key, id)
end
local key = job(id)
redis.call('HSET', key, 'id', id, 'pipeline', pipeline, 'status', 'queued', 'request', ARGV[5], 'created_at', NOW,
  'expires_at', ARGV[6], 'attempts', 0, 'cancel', 0, 'deleted', 0, 'seq', 0)
put(key, 'idempotency_key', idem)
put(key, 'body_hash', body_hash)
redis.call('SADD', P .. 'jobs', id)
redis.call('SADD', P .. 'pipelines', pipeline)
redis.call('ZADD', P .. 'queued:' .. pipeline, NOW, id)
event(id)
return {'created', redis.call('HGETALL', key)}
"""

# ARGV: owner, pipelines...
_CLAIM = """
local best, oldest
for i = 4, #ARGV do
  local head = redis.call('ZRANGE', P .. 'queued:' .. ARGV[i], 0, 0, 'WITHSCORES')
  if head[1] and (not best or tonumber(head[2]) < oldest) then best, oldest = head[1], tonumber(head[2]) end
end
if not best then return false end
return start(best, ARGV[3])
"""

# ARGV: id, owner
_START = """
local f = redis.call('HMGET', job(ARGV[3]), 'status', 'cancel', 'deleted')
if f[1] ~= 'queued' or f[2] ~= '0' or f[3] ~= '0' then return false end
return start(ARGV[3], ARGV[4])
"""

# ARGV: owner, ids...
_HEARTBEAT = """
for i = 4, #ARGV do
  local key = job(ARGV[i])
  local f = redis.call('HMGET', key, 'owner', 'status')
  if f[1] == ARGV[3] and f[2] == 'running' then redis.call('HSET', key, 'heartbeat_at', NOW) end
end
"""

# ARGV: id, progress?, message?
_REPORT = """
local key = job(ARGV[3])
local f = redis.call('HMGET', key, 'status', 'cancel')
if f[1] ~= 'running' or f[2] ~= '0' then return 1 end
put(key, 'progress', opt(ARGV[4]))
put(key, 'message', opt(ARGV[5]))
event(ARGV[3])
return 0
"""

# ARGV: id, owner, status, result?, error?, progress?
_FINISH = """
local key = job(ARGV[3])
local f = redis.call('HMGET', key, 'status', 'owner', 'cancel')
if f[1] ~= 'running' or f[2] ~= ARGV[4] or f[3] ~= '0' then return 0 end
redis.call('HSET', key, 'status', ARGV[5], 'ended_at', NOW)
put(key, 'result', opt(ARGV[6]))
put(key, 'error', opt(ARGV[7]))
put(key, 'progress', opt(ARGV[8]))
ended(ARGV[3])
event(ARGV[3])
return 1
"""

# ARGV: id. Answers the record as it was made canceled, before it is marked deleted.
_CANCEL = """
local id = ARGV[3]
local key = job(id)
local f = redis.call('HMGET', key, 'status', 'deleted', 'pipeline')
if not f[1] or f[2] ~= '0' then return false end
if f[1] == 'queued' or f[1] == 'running' then
  redis.call('ZREM', P .. 'queued:' .. f[3], id)
  redis.call('HSET', key, 'status', 'canceled', 'cancel', 1, 'ended_at', NOW)
  redis.call('HDEL', key, 'progress')
  ended(id)
  event(id)
end
local record = redis.call('HGETALL', key)
redis.call('HSET', key, 'deleted', 1)
redis.call('ZADD', P .. 'deleted', redis.call('HGET', key, 'ended_at'), id)
return record
"""

# ARGV: id, owner?, heartbeat_at?, attempts (the job as read), action, new owner?, error?
# Applied only if the job still runs as read: otherwise it heartbeat, ended or was taken meanwhile.
_INTERRUPTED = """
local id, action = ARGV[3], ARGV[7]
local key = job(id)
local f = redis.call('HMGET', key, 'status', 'owner', 'heartbeat_at', 'attempts')
if f[1] ~= 'running' or f[2] ~= opt(ARGV[4]) or f[3] ~= opt(ARGV[5]) or f[4] ~= ARGV[6] then return false end
if action == 'fail' then
  redis.call('HSET', key, 'status', 'failed', 'ended_at', NOW, 'error', opt(ARGV[9]))
  redis.call('HDEL', key, 'owner')
  ended(id)
elseif action == 'queue' then
  redis.call('SREM', P .. 'running', id)
  redis.call('HSET', key, 'status', 'queued', 'message', 'interrupted; queued again')
  redis.call('HDEL', key, 'owner', 'progress')
  local fields = redis.call('HMGET', key, 'pipeline', 'created_at')
  redis.call('ZADD', P .. 'queued:' .. fields[1], fields[2], id)
else
  redis.call('HSET', key, 'owner', opt(ARGV[8]), 'started_at', NOW, 'heartbeat_at', NOW,
    'message', 'interrupted; running again')
  redis.call('HDEL', key, 'progress')
  redis.call('HINCRBY', key, 'attempts', 1)
end
event(id)
return redis.call('HGETALL', key)
"""

# ARGV: deleted_before. Answers each dropped job's request and result ('' if none).
_EXPIRE = """
local ids = redis.call('ZRANGEBYSCORE', P .. 'ended', '-inf', NOW)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deleted', '-inf', ARGV[3])) do table.insert(ids, id) end
local dropped, seen = {}, {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local key = job(id)
    local f = redis.call('HMGET', key, 'pipeline', 'idempotency_key', 'request', 'result')
    if f[2] then
      local idem_key = P .. 'idem:' .. f[1] .. ':' .. f[2]
      if redis.call('GET', idem_key) == id then redis.call('DEL', idem_key) end
    end
    redis.call('DEL', key, P .. 'events:' .. id)
    redis.call('SREM', P .. 'jobs', id)
    redis.call('ZREM', P .. 'ended', id)
    redis.call('ZREM', P .. 'deleted', id)
    table.insert(dropped, f[3])
    table.insert(dropped, f[4] or '')
  end
end
return dropped
"""

# The requests of the queued and running jobs, read at one instant (a job moving between the
# queue and the running set is seen in one of them).
_PENDING = """
local ids = redis.call('SMEMBERS', P .. 'running')
for _, pipeline in ipairs(redis.call('SMEMBERS', P .. 'pipelines')) do
  for _, id in ipairs(redis.call('ZRANGE', P .. 'queued:' .. pipeline, 0, -1)) do table.insert(ids, id) end
end
local requests = {}
for i, id in ipairs(ids) do requests[i] = redis.call('HGET', job(id), 'request') end
return requests
"""


def _reaching(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """``method``, with Redis out of reach raised as :class:`~dualserve.store.Unavailable`."""

    @functools.wraps(method)
    def reaching(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise Unavailable(f"The job store (Redis) cannot be reached: {exc}") from exc

    return reaching


class RedisRecords:
    """The job records in Redis, through ``client``, under the keys starting with ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "dualserve:") -> None:
        self.client = client
        self.prefix = prefix
        self._create = client.register_script(_PRELUDE + _CREATE)
        self._claim = client.register_script(_PRELUDE + _CLAIM)
        self._start = client.register_script(_PRELUDE + _START)
        self._heartbeat = client.register_script(_PRELUDE + _HEARTBEAT)
        self._report = client.register_script(_PRELUDE + _REPORT)
        self._finish = client.register_script(_PRELUDE + _FINISH)
        self._cancel = client.register_script(_PRELUDE + _CANCEL)
        self._interrupted = client.register_script(_PRELUDE + _INTERRUPTED)
        self._expire = client.register_script(_PRELUDE + _EXPIRE)
        self._pending = client.register_script(_PRELUDE + _PENDING)

    # --- jobs ---------------------------------------------------------------------------------------

    @_reaching
    def create(
        self,
        job_id: str,
        pipeline: str,
        request: dict[str, Any],
        expires_at: float,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new queued job, or the one ``idempotency_key`` already names (and False): the same
        request again is the same job; another request under the same key is refused."""
        outcome, *fields = self._run(
            self._create,
            job_id,
            pipeline,
            json.dumps(request),
            repr(expires_at),
            _some(idempotency_key),
            _some(body_hash),
        )
        if _text(outcome) == "mismatch":
            raise IdempotencyMismatch(idempotency_key)
        return _record(fields[0]), _text(outcome) == "created"

    @_reaching
    def get(self, job_id: str, include_deleted: bool = False) -> JobRecord | None:
        """The job, unless it is unknown, expired, or deleted."""
        fields = self.client.hgetall(self._key("job", job_id))
        if not fields:
            return None
        record = _record(fields)
        if not include_deleted and (record.deleted or record.expires_at <= time.time()):
            return None
        return record

    @_reaching
    def claim(self, owner: str, pipelines: tuple[str, ...]) -> JobRecord | None:
        """The oldest queued job of one of ``pipelines`` (the ones this runner serves), now running
        under ``owner``; None if none waits."""
        if not pipelines:
            return None
        fields = self._run(self._claim, owner, *pipelines)
        return _record(fields) if fields else None

    @_reaching
    def heartbeat(self, owner: str, job_ids: list[str]) -> None:
        if job_ids:
            self._run(self._heartbeat, owner, *job_ids)

    @_reaching
    def report(self, job_id: str, progress: float | None, message: str | None) -> bool:
        """Record progress; whether the job has been canceled (the run should stop)."""
        return bool(self._run(self._report, job_id, _some(_progress(progress)), _some(message)))

    @_reaching
    def is_canceled(self, job_id: str) -> bool:
        found = self.client.hmget(self._key("job", job_id), ["status", "cancel"])
        status, cancel = (None if value is None else _text(value) for value in found)
        return status is None or cancel == "1" or status == "canceled"

    @_reaching
    def finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """End a running job; False if it is no longer this owner's to end (canceled, or taken
        over after this process was thought dead), and the result must be thrown away."""
        changed = self._run(
            self._finish,
            job_id,
            owner,
            status,
            _some(json.dumps(result) if result is not None else None),
            _some(json.dumps(error) if error is not None else None),
            _some(_progress(1.0 if status == "succeeded" else None)),
        )
        return bool(changed)

    @_reaching
    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel and delete the job: a queued one never runs, a running one is asked to stop.
        Answers the job as it was made ``canceled`` (None if unknown)."""
        fields = self._run(self._cancel, job_id)
        return _record(fields) if fields else None

    @_reaching
    def recover(self, is_alive: Callable[[str], bool], stale_after: float, attempts: int) -> list[str]:
        """Jobs whose process died mid-run (its owner is not alive, or no heartbeat for
        ``stale_after`` seconds): queued again, or failed once ``attempts`` runs were interrupted."""
        now = time.time()
        running = sorted(_text(job_id) for job_id in self.client.smembers(self._key("running")))
        pipe = self.client.pipeline(transaction=False)
        for job_id in running:
            pipe.hgetall(self._key("job", job_id))
        recovered = []
        for job_id, raw in zip(running, pipe.execute(), strict=True):
            fields = _fields(raw)
            if fields.get("status") != "running" or _alive(fields, is_alive, stale_after, now):
                continue
            if self._interrupt(fields, now, "fail" if int(fields["attempts"]) >= attempts else "queue"):
                recovered.append(job_id)
        return recovered

    @_reaching
    def take(
        self, job_id: str, owner: str, stale_after: float, attempts: int, is_alive: Callable[[str], bool]
    ) -> JobRecord | None:
        """The job ``job_id`` now running under ``owner``, for a runner handed that one job (a Celery
        task): a queued job starts; a running one whose process died (as :meth:`recover` judges) is
        taken over, or ends failed once ``attempts`` runs were interrupted. None in every other case."""
        # Each pass decides on the job as read; a script applies it only if the job still stands so.
        # A pass that lost a race reads again: the job changed, so this ends.
        while True:
            now = time.time()
            fields = _fields(self.client.hgetall(self._key("job", job_id)))
            if not fields or fields["cancel"] == "1" or fields["deleted"] == "1":
                return None
            if fields["status"] == "queued":
                started = self._run(self._start, job_id, owner, now=now)
                if started:
                    return _record(started)
                continue
            if fields["status"] != "running" or _alive(fields, is_alive, stale_after, now):
                return None
            if int(fields["attempts"]) >= attempts:
                if self._interrupt(fields, now, "fail"):
                    return None
                continue
            # Celery delivered the task again after its worker was killed mid-job: run it anew.
            taken = self._interrupt(fields, now, "take", owner)
            if taken is not None:
                return taken

    @_reaching
    def events(self, job_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        first = max(after, 0)
        found = self.client.lrange(self._key("events", job_id), first, -1)
        return [(first + index, json.loads(data)) for index, data in enumerate(found, start=1)]

    @_reaching
    def expire(self) -> list[str]:
        """Drop the records of jobs past their lifetime; the result digests they held."""
        now = time.time()
        # A deleted job's record stays a minute (answering 404 meanwhile), so that a client
        # following its events still gets the final "canceled" event.
        dropped = self._run(self._expire, repr(now - DELETED_GRACE), now=now)
        digests = []
        for request, result in zip(dropped[::2], dropped[1::2], strict=True):
            held = json.loads(result) if result else {}
            digests += [value for value in (held.get("digest"), json.loads(request).get("body")) if value]
        return digests

    @_reaching
    def digests_in_use(self) -> set[str]:
        """Every blob a job record still refers to: its request body and its result."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in self.client.smembers(self._key("jobs")):
            pipe.hmget(self._key("job", _text(job_id)), ["request", "result"])
        used = set()
        for request, result in pipe.execute():
            if request is None:
                continue  # dropped since the ids were read
            body = json.loads(request).get("body")
            if body:
                used.add(body)
            if result is not None:
                used.add(json.loads(result)["digest"])
        return used

    @_reaching
    def counts(self) -> dict[str, int]:
        """The live jobs (not deleted, not expired) by status, for ``/metrics``."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        for job_id in self.client.smembers(self._key("jobs")):
            pipe.hmget(self._key("job", _text(job_id)), ["status", "deleted", "expires_at"])
        found: dict[str, int] = {}
        for status, deleted, expires_at in pipe.execute():
            if status is None or _text(deleted or b"0") == "1" or float(_text(expires_at)) <= now:
                continue
            found[_text(status)] = found.get(_text(status), 0) + 1
        return found

    @_reaching
    def pending_digests(self) -> set[str]:
        """The request bodies of the jobs still to run or running: never evicted."""
        requests = self._run(self._pending)
        return {body for request in requests if (body := json.loads(request).get("body"))}

    # --- helpers ------------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _run(self, script: Script, *args: str, now: float | None = None) -> Any:
        return script(args=[self.prefix, repr(time.time() if now is None else now), *args])

    def _interrupt(self, fields: dict[str, str], now: float, action: str, owner: str | None = None) -> JobRecord | None:
        """Apply ``action`` (fail, queue, take) to a running job whose process died, if it still
        runs as ``fields`` read it; the job as it then stands, or None."""
        error = {"status": 500, "detail": f"The job was interrupted {fields['attempts']} times (the server stopped)."}
        changed = self._run(
            self._interrupted,
            fields["id"],
            _some(fields.get("owner")),
            _some(fields.get("heartbeat_at")),
            fields["attempts"],
            action,
            _some(owner),
            _some(json.dumps(error)),
            now=now,
        )
        return _record(changed) if changed else None


def _some(value: str | None) -> str:
    """An optional script argument: '' for None, else '=' and the value (see _PRELUDE)."""
    return "" if value is None else "=" + value


def _progress(value: float | None) -> str | None:
    # As JSON, so that events can carry it verbatim; a float, as the SQLite column makes it.
    return None if value is None else json.dumps(float(value))


def _text(value: bytes | str) -> str:
    # The client may or may not decode its answers (decode_responses).
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[Any, Any] | list[Any]) -> dict[str, str]:
    """A hash as HGETALL answers it to a client (a dict) or to a script (a flat list)."""
    pairs: Iterable[tuple[Any, Any]] = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    return {_text(key): _text(value) for key, value in pairs}


def _alive(fields: dict[str, str], is_alive: Callable[[str], bool], stale_after: float, now: float) -> bool:
    """Whether a running job's process still runs it: alive, and a heartbeat within ``stale_after``."""
    return is_alive(fields.get("owner", "")) and float(fields.get("heartbeat_at", 0)) > now - stale_after


def _record(raw: dict[Any, Any] | list[Any]) -> JobRecord:
    fields = _fields(raw)

    def number(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    def document(name: str) -> dict[str, Any] | None:
        return json.loads(fields[name]) if name in fields else None

    return JobRecord(
        id=fields["id"],
        pipeline=fields["pipeline"],
        status=fields["status"],
        request=json.loads(fields["request"]),
        progress=number("progress"),
        message=fields.get("message"),
        created_at=float(fields["created_at"]),
        started_at=number("started_at"),
        ended_at=number("ended_at"),
        expires_at=float(fields["expires_at"]),
        error=document("error"),
        result=document("result"),
        owner=fields.get("owner"),
        attempts=int(fields["attempts"]),
        cancel=fields["cancel"] == "1",
        deleted=fields["deleted"] == "1",
        seq=int(fields["seq"]),
    )
