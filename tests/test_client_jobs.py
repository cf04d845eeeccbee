"""Jobs from the client side: Client and AsyncClient submit, wait (events, resumed or polled),
result and cancel, and `dualserve call --async`, against a real `dualserve run` on FastAPI at `/`
and on the Flask mount at `/flask`. The stream's drops and the polling fallback are checked
against a scripted transport, without a server.

tests/pipelines/slow_job reports 20 steps of progress over `seconds` and returns "{label} done";
tests/pipelines/several returns three PNGs; tests/pipelines/relay to a missing upstream fails
with 502, as its /run does.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dualserve.client import AsyncClient, Client, Job, ServerError
from tests.servers import DUALSERVE, dualserve_command, free_port
from tests.servers import running as running_server  # conftest reads "running" in a test as this name
from tests.test_call_cli import SEVERAL_SIZES, assert_one_line_failure, png_size

PIPELINES = Path(__file__).parent / "pipelines"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("state")
    command, port = dualserve_command(PIPELINES, "uvicorn", "--state-dir", str(state), "--job-workers", "2")
    with running_server(command, port) as started:
        yield started.url


@pytest.fixture(params=["", "/flask"], ids=["fastapi", "flask"])
def url(request: pytest.FixtureRequest, server: str) -> str:
    return server + str(request.param)


def failing(url: str) -> dict[str, str]:
    """relay pointed at a pipeline that does not exist: its run ends 502, as a job and on /run."""
    return {"url": f"{url}/no_such_pipeline/run"}


# --- Client ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "accept", "params"),
    [
        pytest.param("several", None, {}, id="several-zip"),
        pytest.param("several", "application/json", {"count": 2}, id="several-json"),
        pytest.param("picture", "image/webp", {"width": 9, "height": 4}, id="webp"),
        pytest.param("slow_job", None, {"seconds": 0.2, "label": "same"}, id="json"),
    ],
)
def test_submit_wait_result_is_what_run_answers(
    url: str, name: str, accept: str | None, params: dict[str, Any]
) -> None:
    with Client(url) as client:
        job = client.submit(name, accept=accept, **params)
        assert (job.pipeline, job.status in ("queued", "running", "succeeded")) == (name, True)
        assert job.url == f"{url}/jobs/{job.id}"
        ended = client.wait(job, progress=False)
        assert ended.status == "succeeded"
        assert ended.result_url == f"{url}/jobs/{job.id}/result"
        assert ended.ended_at is not None and ended.error is None
        result = client.result(ended)
        direct = client.run(name, accept=accept, **params)
    assert [(item.content, item.media_type, item.filename) for item in result.items] == [
        (item.content, item.media_type, item.filename) for item in direct.items
    ]
    assert result.data == direct.data
    if name == "several":
        assert [item.image().size for item in result.items] == SEVERAL_SIZES[: params.get("count", 3)]


def test_wait_reports_every_change(url: str) -> None:
    seen: list[Job] = []
    with Client(url) as client:
        ended = client.wait(client.submit("slow_job", seconds=0.6, label="tick"), progress=seen.append)
    assert ended.status == "succeeded"
    assert ended.progress == 1.0
    statuses = [job.status for job in seen]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert "running" in statuses
    fractions = [job.progress for job in seen if job.status == "running" and job.progress is not None]
    assert len(fractions) >= 5 and fractions == sorted(fractions)
    assert all(job.message.startswith("tick: step ") for job in seen if job.status == "running" and job.message)
    assert all(job.id == ended.id for job in seen)


def test_wait_draws_a_bar_when_asked(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(url) as client:
        client.wait(client.submit("slow_job", seconds=0.3, label="bar"), progress=True)
    err = capsys.readouterr().err
    assert "slow_job:" in err and "100%" in err and "bar: step" in err and "succeeded" in err


def test_job_wait_and_result_take_an_id(url: str) -> None:
    with Client(url) as client:
        job_id = client.submit("slow_job", seconds=0.1, label="by id").id
        assert client.wait(job_id, progress=False).status == "succeeded"
        assert client.job(job_id).status == "succeeded"
        assert client.result(job_id).json() == "by id done"


def test_result_does_not_wait(url: str) -> None:
    with Client(url) as client:
        job = client.submit("slow_job", seconds=3)
        with pytest.raises(ServerError) as info:
            client.result(job)
        assert info.value.status_code == 409
        client.cancel(job)


def test_cancel_a_running_job(url: str) -> None:
    with Client(url) as client:
        job = client.submit("slow_job", seconds=10)
        deadline = time.monotonic() + 10
        while client.job(job).status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        canceled = client.cancel(job)
        assert canceled.status == "canceled" and canceled.result_url is None
        assert client.wait(canceled) is canceled  # ended already: nothing to follow
        with pytest.raises(ServerError) as gone:
            client.result(canceled)
        assert gone.value.status_code == 410
        with pytest.raises(ServerError) as unknown:
            client.job(job.id)  # the server forgets a canceled job
        assert unknown.value.status_code == 404


def test_a_job_canceled_while_waited_for_ends_the_wait(url: str) -> None:
    with Client(url) as client:
        job = client.submit("slow_job", seconds=10)
        outcome: list[Job] = []
        waiter = threading.Thread(target=lambda: outcome.append(client.wait(job, progress=False)))
        waiter.start()
        time.sleep(0.5)
        client.cancel(job)
        waiter.join(10)
    assert [ended.status for ended in outcome] == ["canceled"]


def test_a_failed_job_raises_the_pipelines_status(url: str) -> None:
    with Client(url) as client:
        job = client.wait(client.submit("relay", **failing(url)), progress=False)
        assert job.status == "failed"
        assert job.error == {"status": 502, "detail": "The upstream service answered 404."}
        with pytest.raises(ServerError) as failed:
            client.result(job)
        with pytest.raises(ServerError) as direct:
            client.run("relay", **failing(url))
    assert (failed.value.status_code, failed.value.detail) == (direct.value.status_code, direct.value.detail)
    assert failed.value.status_code == 502


def test_invalid_parameters_are_refused_at_submit(url: str) -> None:
    with Client(url) as client, pytest.raises(ServerError) as info:
        client.submit("slow_job", seconds="long")
    assert info.value.status_code == 422
    assert info.value.detail[0]["loc"] == ["body", "seconds"]


def test_idempotency_key(url: str) -> None:
    key = f"order-{time.monotonic_ns()}"
    with Client(url) as client:
        first = client.submit("slow_job", idempotency_key=key, seconds=0.1, label="once")
        again = client.submit("slow_job", idempotency_key=key, seconds=0.1, label="once")
        assert again.id == first.id
        with pytest.raises(ServerError) as other:
            client.submit("slow_job", idempotency_key=key, seconds=0.1, label="other")
        assert other.value.status_code == 422
        assert client.result(client.wait(first, progress=False)).json() == "once done"


def test_wait_timeout_leaves_the_job_running(url: str) -> None:
    with Client(url) as client:
        job = client.submit("slow_job", seconds=5)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=job.url):
            client.wait(job, timeout=0.5, progress=False)
        assert time.monotonic() - started < 3
        assert client.job(job).status in ("queued", "running")
        client.cancel(job)


# --- AsyncClient ----------------------------------------------------------------------------------


def test_async_client(url: str) -> None:
    async def main() -> None:
        seen: list[str] = []

        async def report(job: Job) -> None:
            seen.append(job.status)

        async with AsyncClient(url) as client:
            job = await client.submit("several")
            ended = await client.wait(job, progress=report)
            assert ended.status == "succeeded" and ended.result_url
            result = await client.result(ended)
            direct = await client.run("several")
            assert [item.content for item in result.items] == [item.content for item in direct.items]
            assert seen[0] == "queued" and seen[-1] == "succeeded"

            progress: list[float] = []
            slow = await client.wait(
                await client.submit("slow_job", seconds=0.3),
                progress=lambda job: progress.append(job.progress) if job.progress is not None else None,
            )
            assert (await client.result(slow.id)).json() == "job done"
            assert len(progress) >= 5

            failed = await client.wait(await client.submit("relay", **failing(url)), progress=False)
            assert failed.status == "failed"
            with pytest.raises(ServerError) as info:
                await client.result(failed)
            assert info.value.status_code == 502

            running = await client.submit("slow_job", seconds=10)
            canceled = await client.cancel(running)
            assert canceled.status == "canceled"
            with pytest.raises(ServerError) as gone:
                await client.result(canceled)
            assert gone.value.status_code == 410
            with pytest.raises(TimeoutError):
                await client.wait(await client.submit("slow_job", seconds=5), timeout=0.3, progress=False)

    asyncio.run(main())


# --- the stream's drops and the polling fallback, scripted ------------------------------------------


def scripted(job: dict[str, Any], requests: list[httpx2.Request], routes: dict[str, Any]) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        answer = routes[request.url.path]
        return answer(request) if callable(answer) else httpx2.Response(200, json=answer)

    return httpx2.MockTransport(handle)


def event(seq: int, status: str, progress: float | None = None, message: str | None = None) -> bytes:
    data = {"id": "j1", "status": status, "progress": progress, "message": message}
    return f"id: {seq}\nevent: {status}\ndata: {json.dumps(data)}\n\n".encode()


JOB = {"id": "j1", "pipeline": "p", "status": "queued", "progress": None, "message": None, "result_url": None}
DONE = {**JOB, "status": "succeeded", "progress": 1.0, "result_url": "/base/jobs/j1/result", "error": None}


def test_wait_resumes_after_a_drop_with_last_event_id() -> None:
    requests: list[httpx2.Request] = []

    def broken() -> Iterator[bytes]:
        yield event(1, "queued") + b": keep-alive\n\n" + event(2, "running", 0.5, "half")
        raise httpx2.ReadError("the connection broke")

    def events(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        if "last-event-id" not in request.headers:
            return httpx2.Response(200, headers=headers, content=broken())
        return httpx2.Response(200, headers=headers, content=event(3, "succeeded", 1.0, "done"))

    routes = {"/base/jobs/j1": DONE, "/base/jobs/j1/events": events}
    seen: list[Job] = []
    with Client("http://test/base", transport=scripted(JOB, requests, routes)) as client:
        ended = client.wait(Job.from_json(JOB, "http://test/base/jobs/j1"), progress=seen.append)
    assert ended.status == "succeeded" and ended.result_url == "http://test/base/jobs/j1/result"
    assert [(job.status, job.progress, job.message) for job in seen] == [
        ("queued", None, None),
        ("running", 0.5, "half"),
        ("succeeded", 1.0, "done"),
    ]
    followed = [request for request in requests if request.url.path.endswith("/events")]
    assert [request.headers.get("last-event-id") for request in followed] == [None, "2"]
    assert followed[0].headers["accept"] == "text/event-stream"


def test_wait_polls_when_there_is_no_event_stream() -> None:
    requests: list[httpx2.Request] = []
    states = iter([{**JOB, "status": "running", "progress": 0.25}, {**JOB, "status": "running", "progress": 0.75}])

    def status(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=next(states, DONE))

    routes = {
        "/base/jobs/j1": status,
        "/base/jobs/j1/events": lambda request: httpx2.Response(405, json={"detail": "Method Not Allowed"}),
    }
    seen: list[Job] = []
    with Client("http://test/base", transport=scripted(JOB, requests, routes)) as client:
        ended = client.wait("j1", progress=seen.append)
    assert ended.status == "succeeded"
    assert [job.progress for job in seen] == [0.25, 0.75, 1.0]  # the first from wait("j1")'s own GET


def test_a_job_that_vanishes_while_followed_was_canceled() -> None:
    # A DELETE elsewhere: the server may forget the job before its stream sends "canceled".
    def events(request: httpx2.Request) -> httpx2.Response:
        if "last-event-id" in request.headers:
            return httpx2.Response(404, json={"detail": "Job not found"})
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=event(1, "running"))

    routes = {
        "/jobs/j1": lambda request: httpx2.Response(404, json={"detail": "Job not found"}),
        "/jobs/j1/events": events,
    }
    seen: list[str] = []
    with Client("http://test", transport=scripted(JOB, [], routes)) as client:
        ended = client.wait(Job.from_json(JOB, "http://test/jobs/j1"), progress=lambda job: seen.append(job.status))
    assert (ended.status, seen) == ("canceled", ["queued", "running", "canceled"])


def test_wait_gives_up_on_a_job_the_server_does_not_know() -> None:
    routes = {"/jobs/j1/events": lambda request: httpx2.Response(404, json={"detail": "Job not found"})}
    with Client("http://test", transport=scripted(JOB, [], routes)) as client, pytest.raises(ServerError) as info:
        client.wait(Job.from_json(JOB, "http://test/jobs/j1"), progress=False)
    assert info.value.status_code == 404


# --- dualserve call --async -------------------------------------------------------------------------


def call(url: str, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DUALSERVE, "call", *arguments, "--url", url], capture_output=True, timeout=60, check=False)


def job_lines(completed: subprocess.CompletedProcess[bytes], url: str) -> tuple[str, list[str]]:
    """The job's id from the first stderr line, and the status lines after it."""
    lines = completed.stderr.decode().splitlines()
    prefix, _, job_url = lines[0].partition(": job ")[2].partition(": ")
    assert job_url == f"{url}/jobs/{prefix}", lines
    statuses = [line.rsplit(" ", 1)[1] for line in lines[1:] if line.startswith(f"dualserve call: job {prefix} ")]
    return prefix, statuses


def test_cli_async_several_images_to_a_folder(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    completed = call(url, "several", "--async", "-o", f"{folder}/")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == b""
    files = sorted(folder.iterdir())
    assert [path.name for path in files] == ["image_0.png", "image_1.png", "image_2.png"]
    assert [png_size(path.read_bytes()) for path in files] == SEVERAL_SIZES
    _, statuses = job_lines(completed, url)
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert completed.stderr.decode().splitlines()[-3:] == [str(path) for path in files]


def test_cli_async_writes_what_the_synchronous_call_writes(url: str, tmp_path: Path) -> None:
    arguments = ["slow_job", "-p", "seconds=0.3", "-p", "label=cli"]
    asynchronous = call(url, *arguments, "--async")
    assert asynchronous.returncode == 0, asynchronous.stderr
    assert asynchronous.stdout == call(url, *arguments).stdout == b'"cli done"'
    json_arguments = ["several", "--accept", "application/json"]
    assert call(url, *json_arguments, "--async").stdout == call(url, *json_arguments).stdout
    assert call(url, "several", "--async").stdout == call(url, "several").stdout  # the zip, to a pipe
    one = tmp_path / "one.png"
    refused = call(url, "several", "--async", "-o", str(one))
    assert_one_line_failure(
        subprocess.CompletedProcess([], refused.returncode, b"", refused.stderr.splitlines()[-1]), 2, "3 items"
    )
    assert b"the result stays at " in refused.stderr and not one.exists()


def test_cli_async_failed_job_exits_1_with_the_status(url: str) -> None:
    completed = call(url, "relay", "--async", "-p", f"url={url}/no_such_pipeline/run")
    assert completed.returncode == 1
    last = completed.stderr.decode().splitlines()[-1]
    assert "failed: 502 Bad Gateway: The upstream service answered 404." in last
    assert "Traceback" not in completed.stderr.decode()


def test_cli_async_idempotency_key_follows_the_same_job(url: str) -> None:
    key = f"cli-{time.monotonic_ns()}"
    first = call(url, "slow_job", "--async", "-p", "seconds=0.1", "--idempotency-key", key)
    again = call(url, "slow_job", "--async", "-p", "seconds=0.1", "--idempotency-key", key)
    assert (first.returncode, again.returncode) == (0, 0)
    assert job_lines(first, url)[0] == job_lines(again, url)[0]
    assert job_lines(again, url)[1] == ["succeeded"]  # ended already
    other = call(url, "slow_job", "--async", "-p", "seconds=0.2", "--idempotency-key", key)
    assert_one_line_failure(other, 1, "422", "Idempotency-Key")


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        pytest.param(["--idempotency-key", "k"], ["--async"], id="key-without-async"),
        pytest.param(["--async", "--idempotency-key", ""], ["1 to 255"], id="empty-key"),
        pytest.param(["--async", "-p", "seconds"], ["KEY=VALUE"], id="bad-p"),
    ],
)
def test_cli_async_usage_errors(url: str, arguments: list[str], words: list[str]) -> None:
    assert_one_line_failure(call(url, "slow_job", *arguments), 2, *words)


def test_cli_async_invalid_parameters_are_one_line(url: str) -> None:
    assert_one_line_failure(call(url, "slow_job", "--async", "-p", "seconds=long"), 1, "422", "seconds")


def test_cli_async_no_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    completed = call(url, "slow_job", "--async")
    assert_one_line_failure(completed, 1, f"{url}/slow_job/jobs", "onnect")
    assert completed.stdout == b""


def test_cli_async_on_a_terminal_draws_a_bar_and_ctrl_c_leaves_the_job(url: str) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    command = [DUALSERVE, "call", "slow_job", "--async", "-p", "seconds=4", "-p", "label=tty", "--url", url]
    # A child started from a background job inherits SIGINT ignored (bash does that without job
    # control), and Python then never raises KeyboardInterrupt: give it the default, as a terminal would.
    restore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, preexec_fn=restore) as process:
        os.close(terminal)
        output = b""
        while b"tty: step 3 of 20" not in output:
            output += os.read(controller, 65536)
        process.send_signal(signal.SIGINT)
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
        status = process.wait(timeout=30)
    os.close(controller)
    text = output.decode()
    assert status == 130, text
    assert "slow_job:" in text and "%|" in text
    last = text.strip().splitlines()[-1]
    job_url = last.split(" goes on at ")[1].split()[0]
    assert last.startswith("dualserve call: interrupted; job ") and job_url.startswith(f"{url}/jobs/")
    with Client(url) as client:  # not canceled: it ends as it would have
        assert client.result(client.wait(job_url.rsplit("/", 1)[1], progress=False)).json() == "tty done"
