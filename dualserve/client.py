"""Call pipelines over HTTP and get one kind of result, whatever the server answered.

Built on httpx2 (the maintained successor of httpx that Starlette's test client and
huggingface_hub use). The producer/consumer format mismatch disappears: a binary body, a
base64 JSON document (``{"media_type", "data"}``, ``{"count", "items"}``, or a provider's
``{"artifacts": [{"base64": ...}]}``), a zip of several items, or a stream all come back as
:class:`Result` objects with ``.content``, ``.media_type``, ``.filename``, ``.save()`` and
``.image()``.

    with Client("http://127.0.0.1:1416") as client:
        client.run("pillow_image", prompt="a cat").save("cat.png")
        client.download("byte_stream", "tone.wav", seconds=30)   # streamed to disk, progress on a tty

        job = client.submit("slow_render", prompt="a cat")       # a job (docs/contract.md section 6)
        job = client.wait(job)                                   # its progress as a bar on a tty
        client.result(job).save("cat.png")
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import json
import mimetypes
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from email.message import Message
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import anyio
import httpx2

__all__ = ["AsyncClient", "Client", "Job", "Result", "ServerError"]

DEFAULT_URL = "http://127.0.0.1:1416"
CHUNK = 1024 * 1024


class ServerError(Exception):
    """The server answered with an error status; ``detail`` is its JSON ``detail`` when it sent one."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass
class Result:
    """One media result: bytes with a type and, when the server named it, a file name."""

    content: bytes
    media_type: str
    filename: str | None = None
    #: Every item of a several-item answer (a zip, ``{"count", "items"}``, several artifacts);
    #: ``content`` is then the first item's. A single result lists itself.
    items: list[Result] = field(default_factory=list)
    #: The decoded JSON, when the server answered data rather than media.
    data: Any = None

    def __post_init__(self) -> None:
        if not self.items:
            self.items = [self]

    def save(self, path: str | Path) -> Path:
        """Write the content to ``path`` (a folder gets the server's file name) and return the path."""
        target = Path(path)
        if target.is_dir():
            target = target / (self.filename or f"result{_extension(self.media_type)}")
        target.write_bytes(self.content)
        return target

    def save_all(self, folder: str | Path) -> list[Path]:
        """Write every item into ``folder`` under its own name (``item_0.png`` when it has none).

        Two items of the same name never overwrite each other: the later one gets its index.
        """
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for index, item in enumerate(self.items):
            name = item.filename or f"item_{index}{_extension(item.media_type)}"
            if target / name in paths:
                name = f"{Path(name).stem}_{index}{Path(name).suffix}"
            paths.append(item.save(target / name))
        return paths

    def image(self) -> Any:
        """The content as a ``PIL.Image.Image``."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.content))
        image.load()
        return image

    def json(self) -> Any:
        return self.data if self.data is not None else json.loads(self.content)


def interpret(status_code: int, headers: httpx2.Headers, content: bytes) -> Result:
    """Turn any answer into a :class:`Result`; raise :class:`ServerError` for an error status."""
    media_type = headers.get("content-type", "application/octet-stream")
    if status_code >= 400:
        detail: Any = content.decode("utf-8", "replace")
        if media_type.startswith("application/json"):
            try:
                detail = json.loads(content).get("detail", detail)
            except (ValueError, AttributeError):
                pass
        raise ServerError(status_code, detail)
    filename = _filename(headers.get("content-disposition"))
    base = media_type.split(";", 1)[0].strip()
    if base == "application/zip":
        return _from_zip(content)
    if base == "application/json":
        return _from_json(json.loads(content), content)
    return Result(content, media_type, filename)


def _from_json(document: Any, raw: bytes) -> Result:
    # Media only when the whole document has one of the known shapes and its base64 decodes;
    # anything else, such as a pipeline's own {"count": 2, "items": ["a", "b"]}, is data.
    try:
        if isinstance(document, dict):
            if isinstance(document.get("data"), str) and isinstance(document.get("media_type"), str):
                return _decoded(document["data"], document["media_type"])
            items = document.get("items")
            if "count" in document and isinstance(items, list) and items and all(map(_is_item, items)):
                return _several([_decoded(item["data"], item.get("media_type")) for item in items])
            artifacts = document.get("artifacts")
            if isinstance(artifacts, list) and artifacts and all(_is_artifact(item) for item in artifacts):
                return _several([_decoded(item["base64"], None) for item in artifacts])
    except binascii.Error:
        pass
    return Result(raw, "application/json", data=document)


def _is_item(item: Any) -> bool:
    return (
        isinstance(item, dict) and isinstance(item.get("data"), str) and isinstance(item.get("media_type"), str | None)
    )


def _is_artifact(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("base64"), str)


def _decoded(data: str, media_type: str | None) -> Result:
    content = base64.b64decode(data)
    if media_type is None:
        from .core.sniff import OCTET_STREAM, guess_from_bytes

        media_type = guess_from_bytes(content) or OCTET_STREAM
    return Result(content, media_type)


def _several(items: list[Result]) -> Result:
    if len(items) == 1:
        return items[0]
    first = items[0] if items else Result(b"", "application/octet-stream")
    return Result(first.content, first.media_type, first.filename, items=items or [first])


def _from_zip(content: bytes) -> Result:
    from .core.sniff import OCTET_STREAM, guess_from_name

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        items = [
            Result(archive.read(entry), guess_from_name(entry.filename) or OCTET_STREAM, _safe_name(entry.filename))
            for entry in entries
        ]
    return _several(items)


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    message = Message()
    message["content-disposition"] = disposition
    return _safe_name(message.get_filename())


def _safe_name(name: str | None) -> str | None:
    """The last part of ``name``: never a path, whatever the server says, nor ``.`` or ``..``."""
    base = Path(name.replace("\\", "/")).name if name else ""
    return base if base not in ("", ".", "..") else None


def _run_path(name: str) -> str:
    # Relative to the base URL, which keeps its /flask or /fastapi prefix; the name is one segment.
    return f"{quote(name, safe='')}/run"


def _extension(media_type: str) -> str:
    return mimetypes.guess_extension(media_type.split(";", 1)[0].strip()) or ".bin"


class _Progress:
    """A progress bar on stderr when it is a terminal (tqdm), silence otherwise."""

    def __init__(self, total: int | None, label: str, enabled: bool | None) -> None:
        self.bar: Any = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _request_options(params: dict[str, Any], accept: str | None) -> dict[str, Any]:
    return {"json": params, "headers": {"accept": accept} if accept else {}}


# --- jobs (docs/contract.md section 6) ------------------------------------------------------------

#: The statuses a job ends with.
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
#: Event streams that break one after the other, with no event between, before wait() polls instead.
_DROPS = 3
#: Polls in a row that reach no server before wait() gives up (a second apart at most).
_POLL_FAILURES = 10


@dataclass(frozen=True)
class Job:
    """A job: the server's job JSON, and where the job lives.

    ``url``, ``result_url`` and ``events_url`` are absolute. ``progress`` is 0..1, or None when the
    pipeline did not say; the times are the server's RFC 3339 strings (``created_at`` ...).
    """

    id: str
    pipeline: str
    #: ``queued``, ``running``, then ``succeeded``, ``failed`` or ``canceled``.
    status: str
    url: str
    progress: float | None = None
    message: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    expires_at: str | None = None
    #: Where the result is, once the job succeeded.
    result_url: str | None = None
    #: A failed job's ``{"status", "detail"}``: what its ``/run`` would have answered.
    error: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def events_url(self) -> str:
        return f"{self.url}/events"

    @classmethod
    def from_json(cls, document: Any, url: str, base: str | None = None) -> Job:
        """The job in ``document``, which lives at ``url``; ``result_url`` is resolved against ``base``
        (the URL that answered), or ``url``."""
        if not (isinstance(document, dict) and isinstance(document.get("id"), str) and "status" in document):
            raise ValueError(f"the answer is not a job: {json.dumps(document)[:200]}")
        result_url = document.get("result_url")
        error = document.get("error")
        return cls(
            id=document["id"],
            pipeline=str(document.get("pipeline", "")),
            status=str(document["status"]),
            url=url,
            progress=document.get("progress"),
            message=document.get("message"),
            created_at=document.get("created_at"),
            started_at=document.get("started_at"),
            ended_at=document.get("ended_at"),
            expires_at=document.get("expires_at"),
            result_url=str(httpx2.URL(base or url).join(result_url)) if isinstance(result_url, str) else None,
            error=error if isinstance(error, dict) else None,
        )


def _submit_options(params: dict[str, Any], accept: str | None, idempotency_key: str | None) -> dict[str, Any]:
    options = _request_options(params, accept)
    if idempotency_key is not None:
        options["headers"]["idempotency-key"] = idempotency_key
    return options


def _jobs_path(name: str) -> str:
    return f"{quote(name, safe='')}/jobs"


def _job_url(base: httpx2.URL, job: Job | str) -> str:
    return job.url if isinstance(job, Job) else str(base.join(f"jobs/{quote(job, safe='')}"))


def _result_url(base: httpx2.URL, job: Job | str) -> str:
    if isinstance(job, Job):
        if job.status == "canceled":
            raise ServerError(410, "The job was canceled.")  # the server forgets a canceled job: 404
        if job.result_url:
            return job.result_url
    return f"{_job_url(base, job)}/result"


def _job_answer(response: httpx2.Response, url: str | None = None) -> Job:
    """The job in a job endpoint's answer (read); raise :class:`ServerError` for an error status."""
    if response.status_code >= 300:
        if response.status_code < 400:
            raise ServerError(response.status_code, f"a redirect to {response.headers.get('location', 'nowhere')}")
        interpret(response.status_code, response.headers, response.content)
    document = response.json()
    if url is None:
        location = response.headers.get("location")
        job_id = document.get("id") if isinstance(document, dict) else None
        url = str(response.url.join(location or f"../jobs/{quote(str(job_id), safe='')}"))
    return Job.from_json(document, url, str(response.url))


class _EventParser:
    """Server-sent events line by line (the WHATWG rules a job's stream needs): an event at each
    blank line; ``last_id`` is what ``Last-Event-ID`` sends on a reconnect."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry: float | None = None
        self._type = ""
        self._data: list[str] = []

    def line(self, line: str) -> tuple[str, str] | None:
        """Feed one line (without its end); an event's ``(type, data)`` when one is complete."""
        if not line:
            event = (self._type or "message", "\n".join(self._data)) if self._data else None
            self._type, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value) / 1000
        return None


class _JobBar:
    """A job's progress on stderr when it is a terminal (tqdm): the fraction, the elapsed time, and
    the pipeline's message (or the status) after it; silence otherwise."""

    def __init__(self, job: Job, enabled: bool | None) -> None:
        self.bar: Any = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=100,
                desc=job.pipeline or job.id,
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
                dynamic_ncols=True,
            )
            self.update(job)

    def update(self, job: Job) -> None:
        if self.bar is None:
            return
        if job.status == "succeeded":
            self.bar.n = 100
        elif job.progress is not None:
            self.bar.n = round(min(1.0, max(0.0, float(job.progress))) * 100, 1)
        text = job.message if job.status == "running" and job.message else job.status
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Follower:
    """What both clients' ``wait`` share, without IO: the job as last seen, where its events
    resume, the deadline, the delays between tries, and how each change is shown."""

    def __init__(self, job: Job, timeout: float | None, progress: bool | Callable[[Job], Any] | None) -> None:
        self.job = job
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.callback = progress if callable(progress) else None
        self.bar = _JobBar(job, None if progress is None else progress is True)
        self.events = _EventParser()
        self.drops = 0
        #: The server answered for the job during this wait (an event, or the job's JSON).
        self.confirmed = False
        self.poll_delay = 0.2

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.events.last_id is not None:
            headers["last-event-id"] = self.events.last_id
        return headers

    def stream_timeout(self, timeout: httpx2.Timeout) -> httpx2.Timeout:
        """The client's timeouts, the read one cut to what is left before the deadline."""
        read = timeout.read
        left = self.left()
        if left is not None:
            read = max(0.05, left if read is None else min(read, left))
        return httpx2.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)

    def usable(self, response: httpx2.Response) -> bool:
        media_type = response.headers.get("content-type", "")
        return response.status_code == 200 and media_type.split(";")[0].strip().lower() == "text/event-stream"

    def line(self, line: str) -> Job | None:
        """The job as an event line leaves it, if that line ended an event that changed it."""
        event = self.events.line(line)
        if event is None:
            return None
        try:
            data = json.loads(event[1])
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        self.drops = 0
        self.confirmed = True
        status = data.get("status") or event[0]
        job = replace(self.job, status=str(status), progress=data.get("progress"), message=data.get("message"))
        if job.status == "succeeded" and job.result_url is None:
            job = replace(job, result_url=f"{job.url}/result")
        return self.seen(job)

    def seen(self, job: Job) -> Job | None:
        """Record ``job``; it back if anything changed (then the IO side calls :attr:`callback`)."""
        if job == self.job:
            return None
        self.job = job
        self.bar.update(job)
        return job

    def gone(self, error: ServerError) -> Job | None:
        """A 404 for the job: once it was there in this wait, it was canceled (a DELETE is the one way
        a job that has not ended goes, and the server may forget it before its stream says so);
        else the job is unknown here, and ``error`` is raised."""
        if not self.confirmed:
            raise error
        return self.seen(replace(self.job, status="canceled", progress=None, result_url=None))

    def dropped(self) -> float | None:
        """The stream ended or broke before the job did: the delay before trying again, or None to poll."""
        self.drops += 1
        if self.drops > _DROPS:
            return None
        return self.events.retry if self.events.retry is not None else 0.2 * 2 ** (self.drops - 1)

    def next_poll(self) -> float:
        delay, self.poll_delay = self.poll_delay, min(1.0, self.poll_delay * 1.5)
        left = self.left()
        return delay if left is None else min(delay, left)

    def left(self) -> float | None:
        """Seconds left before the deadline; raise TimeoutError once it passed."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"job {self.job.id} did not end within {self.timeout:g} s; it goes on at {self.job.url}")
        return left

    def ended(self, refreshed: Job | None) -> Job:
        """The ended job: as the server has it now, or, once it forgot a canceled job, as last seen."""
        return refreshed if refreshed is not None and refreshed.ended else self.job

    def close(self) -> None:
        self.bar.close()


class Client:
    """A synchronous client for a dualserve server (or any service that answers media).

    :param url: the server, with the frontend's prefix if any (``http://host:1416/flask``).
    :param timeout: seconds; generating an image can take a while.
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, **options: Any) -> None:
        self.http = httpx2.Client(base_url=url.rstrip("/") + "/", timeout=timeout, **options)

    def run(self, name: str, accept: str | None = None, **params: Any) -> Result:
        """POST ``params`` as JSON to ``/{name}/run`` and interpret the answer.

        Errors: :class:`ServerError` for an error status; ``httpx2.TransportError`` (``ConnectError``,
        ``TimeoutException``, ...) when no answer came; ``ValueError`` or ``zipfile.BadZipFile`` when
        the answer says JSON or zip and is not.
        """
        response = self.http.post(_run_path(name), **_request_options(params, accept))
        return interpret(response.status_code, response.headers, response.content)

    @contextmanager
    def stream(self, name: str, accept: str | None = None, **params: Any) -> Iterator[httpx2.Response]:
        """POST ``params`` as JSON to ``/{name}/run`` and yield the response, its body not read yet.

        An error status raises :class:`ServerError` (its body read for the detail) before anything is yielded.
        """
        with self.http.stream("POST", _run_path(name), **_request_options(params, accept)) as response:
            if response.status_code >= 400:
                response.read()
                interpret(response.status_code, response.headers, response.content)
            yield response

    def download(
        self, name: str, path: str | Path, accept: str | None = None, progress: bool | None = None, **params: Any
    ) -> Path:
        """Stream the answer to ``path`` without holding it in memory; a progress bar shows on a tty."""
        target = Path(path)
        with self.stream(name, accept, **params) as response:
            if target.is_dir():
                target = target / (_filename(response.headers.get("content-disposition")) or f"{name}.bin")
            with target.open("wb") as file:
                _copy(response.iter_bytes(CHUNK), file, response.headers, str(target.name), progress)
        return target

    def submit(self, name: str, accept: str | None = None, idempotency_key: str | None = None, **params: Any) -> Job:
        """POST ``params`` as JSON to ``/{name}/jobs``, as :meth:`run` sends them: the job, queued.

        :param accept: the representation of the result, as for :meth:`run`; the job keeps it.
        :param idempotency_key: sent as ``Idempotency-Key``: the same key and parameters again
            answer the same job (no second run); the same key with other parameters raises
            :class:`ServerError` 422.

        Errors as :meth:`run`: the validation of ``/run`` answers before anything is queued.
        """
        response = self.http.post(_jobs_path(name), **_submit_options(params, accept, idempotency_key))
        return _job_answer(response)

    def job(self, job: Job | str) -> Job:
        """The job as the server has it now (``job`` is a :class:`Job` or its id); :class:`ServerError`
        404 once it is unknown, expired or canceled."""
        url = _job_url(self.http.base_url, job)
        return _job_answer(self.http.get(url), url)

    def wait(
        self, job: Job | str, timeout: float | None = None, progress: bool | Callable[[Job], Any] | None = None
    ) -> Job:
        """Follow the job until it ends, and return it ended (``succeeded``, ``failed`` or ``canceled``).

        Follows ``/jobs/{id}/events``, resumes with ``Last-Event-ID`` when the connection drops, and
        polls ``/jobs/{id}`` when the stream cannot be used.

        :param timeout: seconds; past them ``TimeoutError`` (the job goes on). None: no limit.
        :param progress: None shows a progress bar on stderr when it is a terminal, True always,
            False never; a callable is called with the job at every change instead.
        """
        current = job if isinstance(job, Job) else self.job(job)
        if current.ended:
            return current
        follower = _Follower(current, timeout, progress)
        follower.confirmed = current is not job  # fetched just now
        try:
            self._report(follower, current)
            if not self._follow_events(follower):
                self._poll(follower)
                return follower.job
            try:
                refreshed: Job | None = self.job(follower.job)
            except ServerError as exc:
                if exc.status_code != 404:
                    raise
                refreshed = None
            return follower.ended(refreshed)
        finally:
            follower.close()

    def result(self, job: Job | str) -> Result:
        """The result of a succeeded job, decoded as :meth:`run` decodes an answer. It does not wait:
        a job not ended yet raises :class:`ServerError` 409, a failed one its status and detail,
        a canceled one 410."""
        with self.stream_result(job) as response:
            return interpret(response.status_code, response.headers, response.read())

    @contextmanager
    def stream_result(self, job: Job | str) -> Iterator[httpx2.Response]:
        """As :meth:`stream` for a job's result: the response, its body not read yet; an error raises."""
        with self.http.stream("GET", _result_url(self.http.base_url, job)) as response:
            if response.status_code >= 400:
                response.read()
                interpret(response.status_code, response.headers, response.content)
            yield response

    def cancel(self, job: Job | str) -> Job:
        """``DELETE`` the job: a queued one never runs, a running one is asked to stop. The job as
        it ended; the server forgets it (and its result) from then on."""
        url = _job_url(self.http.base_url, job)
        return _job_answer(self.http.delete(url), url)

    def _follow_events(self, follower: _Follower) -> bool:
        """Follow the events to the job's end, resuming after a drop; False when the stream cannot
        be used (not an event stream, or drops in a row): the caller polls then."""
        while True:
            try:
                with self.http.stream(
                    "GET",
                    follower.job.events_url,
                    headers=follower.headers(),
                    timeout=follower.stream_timeout(self.http.timeout),
                ) as response:
                    if response.status_code == 404:
                        response.read()
                        try:
                            interpret(response.status_code, response.headers, response.content)
                        except ServerError as exc:
                            self._report(follower, follower.gone(exc))
                            return True
                    if not follower.usable(response):
                        return False
                    for line in response.iter_lines():
                        self._report(follower, follower.line(line))
                        if follower.job.ended:
                            return True
                        follower.left()
            except httpx2.TransportError:
                pass  # dropped, or no byte within the read timeout: resume after the last event
            delay = follower.dropped()
            if delay is None:
                return False
            left = follower.left()
            time.sleep(delay if left is None else min(delay, left))

    def _poll(self, follower: _Follower) -> None:
        failures = 0
        while not follower.job.ended:
            time.sleep(follower.next_poll())
            follower.left()
            try:
                job = self.job(follower.job)
            except httpx2.TransportError:
                failures += 1
                if failures >= _POLL_FAILURES:
                    raise
                continue
            except ServerError as exc:
                if exc.status_code != 404:
                    raise
                self._report(follower, follower.gone(exc))
                return
            failures = 0
            follower.confirmed = True
            self._report(follower, follower.seen(job))

    @staticmethod
    def _report(follower: _Follower, job: Job | None) -> None:
        if job is not None and follower.callback is not None:
            follower.callback(job)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _copy(chunks: Iterator[bytes], file: IO[bytes], headers: httpx2.Headers, label: str, progress: bool | None) -> None:
    length = headers.get("content-length")
    bar = _Progress(int(length) if length and length.isdigit() else None, label, progress)
    try:
        for chunk in chunks:
            file.write(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()


class AsyncClient:
    """The asynchronous twin of :class:`Client`, for use inside an event loop."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, **options: Any) -> None:
        self.http = httpx2.AsyncClient(base_url=url.rstrip("/") + "/", timeout=timeout, **options)

    async def run(self, name: str, accept: str | None = None, **params: Any) -> Result:
        response = await self.http.post(_run_path(name), **_request_options(params, accept))
        return interpret(response.status_code, response.headers, response.content)

    @asynccontextmanager
    async def stream(self, name: str, accept: str | None = None, **params: Any) -> AsyncIterator[httpx2.Response]:
        """As :meth:`Client.stream`: the response, its body not read yet; an error status raises."""
        async with self.http.stream("POST", _run_path(name), **_request_options(params, accept)) as response:
            if response.status_code >= 400:
                await response.aread()
                interpret(response.status_code, response.headers, response.content)
            yield response

    async def download(
        self, name: str, path: str | Path, accept: str | None = None, progress: bool | None = None, **params: Any
    ) -> Path:
        target = Path(path)
        async with self.stream(name, accept, **params) as response:
            if target.is_dir():
                target = target / (_filename(response.headers.get("content-disposition")) or f"{name}.bin")
            length = response.headers.get("content-length")
            bar = _Progress(int(length) if length and length.isdigit() else None, target.name, progress)
            try:
                with target.open("wb") as file:
                    async for chunk in response.aiter_bytes(CHUNK):
                        file.write(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
        return target

    async def submit(
        self, name: str, accept: str | None = None, idempotency_key: str | None = None, **params: Any
    ) -> Job:
        """As :meth:`Client.submit`."""
        response = await self.http.post(_jobs_path(name), **_submit_options(params, accept, idempotency_key))
        return _job_answer(response)

    async def job(self, job: Job | str) -> Job:
        """As :meth:`Client.job`."""
        url = _job_url(self.http.base_url, job)
        return _job_answer(await self.http.get(url), url)

    async def wait(
        self, job: Job | str, timeout: float | None = None, progress: bool | Callable[[Job], Any] | None = None
    ) -> Job:
        """As :meth:`Client.wait`; a ``progress`` callable may also be a coroutine function."""
        current = job if isinstance(job, Job) else await self.job(job)
        if current.ended:
            return current
        follower = _Follower(current, timeout, progress)
        follower.confirmed = current is not job  # fetched just now
        try:
            await self._report(follower, current)
            if not await self._follow_events(follower):
                await self._poll(follower)
                return follower.job
            try:
                refreshed: Job | None = await self.job(follower.job)
            except ServerError as exc:
                if exc.status_code != 404:
                    raise
                refreshed = None
            return follower.ended(refreshed)
        finally:
            follower.close()

    async def result(self, job: Job | str) -> Result:
        """As :meth:`Client.result`."""
        async with self.stream_result(job) as response:
            return interpret(response.status_code, response.headers, await response.aread())

    @asynccontextmanager
    async def stream_result(self, job: Job | str) -> AsyncIterator[httpx2.Response]:
        """As :meth:`Client.stream_result`."""
        async with self.http.stream("GET", _result_url(self.http.base_url, job)) as response:
            if response.status_code >= 400:
                await response.aread()
                interpret(response.status_code, response.headers, response.content)
            yield response

    async def cancel(self, job: Job | str) -> Job:
        """As :meth:`Client.cancel`."""
        url = _job_url(self.http.base_url, job)
        return _job_answer(await self.http.delete(url), url)

    async def _follow_events(self, follower: _Follower) -> bool:
        while True:
            try:
                async with self.http.stream(
                    "GET",
                    follower.job.events_url,
                    headers=follower.headers(),
                    timeout=follower.stream_timeout(self.http.timeout),
                ) as response:
                    if response.status_code == 404:
                        await response.aread()
                        try:
                            interpret(response.status_code, response.headers, response.content)
                        except ServerError as exc:
                            await self._report(follower, follower.gone(exc))
                            return True
                    if not follower.usable(response):
                        return False
                    async for line in response.aiter_lines():
                        await self._report(follower, follower.line(line))
                        if follower.job.ended:
                            return True
                        follower.left()
            except httpx2.TransportError:
                pass
            delay = follower.dropped()
            if delay is None:
                return False
            left = follower.left()
            await anyio.sleep(delay if left is None else min(delay, left))

    async def _poll(self, follower: _Follower) -> None:
        failures = 0
        while not follower.job.ended:
            await anyio.sleep(follower.next_poll())
            follower.left()
            try:
                job = await self.job(follower.job)
            except httpx2.TransportError:
                failures += 1
                if failures >= _POLL_FAILURES:
                    raise
                continue
            except ServerError as exc:
                if exc.status_code != 404:
                    raise
                await self._report(follower, follower.gone(exc))
                return
            failures = 0
            follower.confirmed = True
            await self._report(follower, follower.seen(job))

    @staticmethod
    async def _report(follower: _Follower, job: Job | None) -> None:
        if job is not None and follower.callback is not None:
            outcome = follower.callback(job)
            if inspect.isawaitable(outcome):
                await outcome

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
