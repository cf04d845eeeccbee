"""``dualserve run`` serves a pipelines directory with uvicorn, gunicorn or Flask's server;
``dualserve call`` calls a pipeline and saves its result."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .__version__ import __version__
from .serving import config

__all__ = ["main"]

SERVERS = ("uvicorn", "gunicorn", "flask")
#: gthread threads per gunicorn worker unless --threads says otherwise: each runs one request at a time.
GUNICORN_THREADS = 8


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command == "call":
        return _call(options)
    if options.command == "parity":
        return _parity(options)
    if options.command == "worker":
        return _worker(parser, options)
    if options.command != "run":
        parser.print_help()
        return 2
    directory = Path(options.pipelines_dir).resolve()
    if not directory.is_dir():
        parser.error(f"--pipelines-dir {options.pipelines_dir!r} is not a directory")
    if options.workers < 1:
        parser.error("--workers must be 1 or more")
    if options.server == "flask" and options.workers > 1:
        parser.error("--server flask runs one process; use uvicorn or gunicorn for --workers")
    # Servers import the app factory by name in each worker; the environment carries the settings.
    os.environ[config.PIPELINES_DIR_ENV] = str(directory)
    if options.debug:
        os.environ[config.DEBUG_ENV] = "1"
    # Each setting's flag, checked, into the variable the worker processes read.
    for flag, value, name, least in (
        ("--max-body-size", options.max_body_size, config.MAX_BODY_SIZE_ENV, 0),
        ("--store-max-bytes", options.store_max_bytes, config.STORE_MAX_BYTES_ENV, 0),
        ("--threads", options.threads, config.THREADS_ENV, 1),
        ("--max-streams", options.max_streams, config.MAX_STREAMS_ENV, 1),
        ("--max-image-pixels", options.max_image_pixels, config.MAX_IMAGE_PIXELS_ENV, 1),
        ("--job-workers", options.job_workers, config.JOB_WORKERS_ENV, 1),
    ):
        if value is not None:
            if value < least:
                parser.error(f"{flag} must be {least} or more")
            os.environ[name] = str(value)
    _seconds_settings(
        parser,
        ("--timeout", options.timeout, config.TIMEOUT_ENV),
        ("--result-ttl", options.result_ttl, config.RESULT_TTL_ENV),
        ("--cache-ttl", options.cache_ttl, config.CACHE_TTL_ENV),
    )
    _state_dir_setting(options)
    _cluster_settings(parser, options)
    _edge_settings(parser, options)
    if options.s3_redirect:
        if not (options.store or "").startswith("s3://"):
            parser.error("--s3-redirect needs an s3:// --store (and --broker)")
        os.environ[config.S3_REDIRECT_ENV] = "1"
    if options.server == "flask" and options.threads is not None:
        parser.error("--server flask starts a thread per request and cannot cap them; use uvicorn or gunicorn")
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    _tune_malloc()
    # /metrics sums every worker process's counts: prometheus_client's multiprocess folder, made
    # here, before any worker starts, so each inherits it (a user's own PROMETHEUS_MULTIPROC_DIR wins).
    from .serving import metrics

    metrics.prepare_multiprocess(options.workers)
    return {"uvicorn": _uvicorn, "gunicorn": _gunicorn, "flask": _flask}[options.server](options)


def _seconds_settings(parser: argparse.ArgumentParser, *flags: tuple[str, float | None, str]) -> None:
    """Each ``(flag, seconds, variable)`` given, checked above 0, into the variable."""
    for flag, seconds, name in flags:
        if seconds is not None:
            if not seconds > 0:
                parser.error(f"{flag} must be above 0")
            os.environ[name] = str(seconds)


def _state_dir_setting(options: argparse.Namespace) -> None:
    if options.state_dir is not None:
        # Absolute, so that every worker process finds the same folder whatever its directory.
        os.environ[config.STATE_DIR_ENV] = str(Path(options.state_dir).resolve())


def _cluster_settings(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """``--broker`` and ``--store``, both or neither, into the environment the processes read."""
    if (options.broker is None) != (options.store is None):
        parser.error("--broker and --store go together: the Redis URL, and the results' shared directory or s3://")
    if options.broker is None:
        return
    if not options.broker.startswith(("redis://", "rediss://", "unix://")):
        parser.error(f"--broker must be a Redis URL such as redis://127.0.0.1:6379/0, not {options.broker!r}")
    store = options.store
    if not store.startswith("s3://"):
        store = str(Path(store).resolve())  # the same folder for every process, whatever its directory
    os.environ[config.BROKER_ENV] = options.broker
    os.environ[config.STORE_ENV] = store


def _edge_settings(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """``--cors-origin``, ``--api-key`` and ``--rate-limit``, checked now, into the environment."""
    from .core.cors import CorsPolicy
    from .core.keys import ApiKeys
    from .serving.ratelimit import RateLimit

    try:
        if options.cors_origins:
            CorsPolicy(options.cors_origins)
            os.environ[config.CORS_ORIGINS_ENV] = ",".join(options.cors_origins)
        if options.api_keys:
            ApiKeys(options.api_keys)
            # Keys go to the workers through the environment, never their command lines (ps).
            os.environ[config.API_KEYS_ENV] = ",".join(options.api_keys)
        if options.rate_limit:
            RateLimit(options.rate_limit)
            os.environ[config.RATE_LIMIT_ENV] = options.rate_limit
    except ValueError as exc:
        parser.error(str(exc))


def _worker(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    """``dualserve worker``: a Celery worker of :mod:`dualserve.cluster.app`."""
    directory = Path(options.pipelines_dir).resolve()
    if not directory.is_dir():
        parser.error(f"--pipelines-dir {options.pipelines_dir!r} is not a directory")
    if options.concurrency < 1:
        parser.error("--concurrency must be 1 or more")
    if options.broker is None or options.store is None:
        parser.error("a worker needs --broker and --store, the same as the API processes'")
    os.environ[config.PIPELINES_DIR_ENV] = str(directory)
    _cluster_settings(parser, options)
    _state_dir_setting(options)
    _seconds_settings(
        parser,
        ("--timeout", options.timeout, config.TIMEOUT_ENV),
        ("--cache-ttl", options.cache_ttl, config.CACHE_TTL_ENV),
    )
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    try:
        from .cluster.app import app
        from .cluster.connection import QUEUE
    except ImportError as exc:
        print(f"dualserve worker needs Celery and redis-py: pip install 'dualserve[cluster]' ({exc})", file=sys.stderr)
        return 2
    app.conf.broker_url = options.broker
    app.worker_main(
        [
            "worker",
            "--queues",
            QUEUE,
            "--concurrency",
            str(options.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            options.log_level.upper(),
            "--hostname",
            f"dualserve-{os.getpid()}@%h",
            # No gossip, mingle or worker heartbeats: dualserve's records carry what it needs, and
            # each of those is traffic on the broker for every worker.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


def _tune_malloc() -> None:
    """Two malloc arenas and a fixed 4 MiB mmap threshold, unless the environment chose otherwise.

    glibc gives every thread that allocates an arena of its own, and raises its mmap threshold
    each time a large block is freed, so that Pillow's 16 MB image blocks come to live in those
    arenas and stay there once freed: twelve 7000 x 7000 uploads, four at a time, left a server at
    1.7 GB (0.9 GB with two arenas alone). With both settings it went back to 75 MB. The variables
    reach the processes the server starts (uvicorn's workers); this process, already running,
    gets the same from ``mallopt``, before its server starts a thread (gunicorn's forks inherit it).
    """
    chosen = [(name, option, value) for name, option, value in _MALLOC if name not in os.environ]
    for name, _, value in chosen:
        os.environ[name] = str(value)
    if chosen and sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            for _, option, value in chosen:
                libc.mallopt(option, value)
        except (OSError, AttributeError):
            pass  # not glibc: musl has neither arenas nor a moving threshold


# The environment variable, mallopt's option number (glibc's malloc.h) and the value.
_MALLOC = (("MALLOC_ARENA_MAX", -8, 2), ("MALLOC_MMAP_THRESHOLD_", -3, 4 * 1024 * 1024))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualserve", description="Serve pipeline wrappers with FastAPI and Flask.")
    parser.add_argument("--version", action="version", version=f"dualserve {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve a pipelines directory",
        description="uvicorn serves FastAPI at / and Flask at /flask/; gunicorn and flask serve Flask at / "
        "and FastAPI at /fastapi/.",
    )
    run.add_argument("--pipelines-dir", required=True, help="a folder of pipeline folders, or one pipeline folder")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=1416)
    run.add_argument("--server", choices=SERVERS, default="uvicorn")
    run.add_argument("--workers", type=int, default=1, help="worker processes (uvicorn, gunicorn)")
    run.add_argument("--debug", action="store_true", help="name the exception in 500 answers")
    run.add_argument(
        "--max-body-size", type=int, default=None, metavar="BYTES", help="largest request body (default 64 MiB)"
    )
    run.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="a pipeline slower than this answers 504"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="sync pipeline runs at once per worker: uvicorn's pool and the Flask mount (default 64), "
        "gunicorn's threads (default 8)",
    )
    run.add_argument(
        "--max-streams",
        type=int,
        default=None,
        metavar="N",
        help="streams sent at once per worker; one more answers 503 with Retry-After (default: no limit)",
    )
    run.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image Pillow decodes or a pipeline returns; an upload over it answers 413 (default 64000000)",
    )
    run.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long open responses may take to finish before they are cut (uvicorn, gunicorn)",
    )
    run.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="job records and stored results, shared by the workers (default: .dualserve in the working directory)",
    )
    run.add_argument(
        "--result-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a job and its result are kept (default 3600)",
    )
    run.add_argument(
        "--job-workers", type=int, default=None, metavar="N", help="jobs each worker process runs at once (default 1)"
    )
    run.add_argument(
        "--cache-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="answer every pipeline's /run from the store this long for the same arguments and representation "
        "(a wrapper's own @cached wins; default: only @cached pipelines)",
    )
    run.add_argument(
        "--store-max-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="what stored results may take on disk; past it, least recently used first (default 4 GiB)",
    )
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _cluster_arguments(run, "scaled out: /run and jobs go to 'dualserve worker' processes, none run here")
    run.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        default=[],
        metavar="ORIGIN",
        help="an origin browsers may call from, such as https://app.example.com, or * for any; repeat for more",
    )
    run.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=[],
        metavar="KEY",
        help="a key the pipeline and job routes need (Authorization: Bearer KEY or X-API-Key: KEY); repeat "
        "for more; or DUALSERVE_API_KEYS=K1,K2, which keeps keys out of the process list",
    )
    run.add_argument(
        "--rate-limit",
        default=None,
        metavar="RATE",
        help="requests per key, else per client address, such as 60/minute (counted in Redis with --broker)",
    )
    run.add_argument(
        "--s3-redirect",
        action="store_true",
        help="answer a job's result on S3 with a 303 to a presigned URL instead of sending it",
    )
    worker = commands.add_parser(
        "worker",
        help="run the pipelines for 'dualserve run --broker' (a Celery worker)",
        description="A Celery worker: each of its processes runs every pipeline's setup() once, then takes "
        "jobs and /run calls from the broker, one at a time.",
    )
    worker.add_argument("--pipelines-dir", required=True, help="the same pipelines as the API processes serve")
    _cluster_arguments(worker, "required")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N", help="worker processes (default 1)")
    worker.add_argument(
        "--state-dir", default=None, metavar="DIR", help="this machine's cache and local copies (default .dualserve)"
    )
    worker.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="a /run call slower than this answers 504"
    )
    worker.add_argument(
        "--cache-ttl", type=float, default=None, metavar="SECONDS", help="as for run (cached on this machine)"
    )
    worker.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    call = commands.add_parser(
        "call",
        help="call a pipeline and save or print its result",
        description="POST the parameters as JSON to NAME/run (with --async, to NAME/jobs: a job, followed "
        "to its end, then its result). A value that reads as JSON (256, true, "
        '[1,2], {"a":1}) is sent as that JSON; anything else as a string. Without -o, JSON and text are '
        "printed and binary goes to a pipe (several items as the server's zip), never to a terminal.",
        epilog="Exit status: 0 done; 1 the server answered an error, the job failed or was canceled, the "
        "server could not be reached, or the answer could not be written; 2 the command line cannot be used "
        "as given; 130 interrupted (Ctrl-C; a job goes on, and its URL is printed).",
    )
    call.add_argument("name", help="the pipeline")
    call.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter; repeat for more"
    )
    call.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="a folder (existing, or ending in /) gets every item under the server's name; FILE.zip or "
        "FILE.json the answer as the server sent it; another FILE the one item the answer holds; - is stdout",
    )
    call.add_argument("--url", default="http://127.0.0.1:1416", help="the server, with /flask or /fastapi if mounted")
    call.add_argument(
        "--accept", help="the media type to ask for, such as image/webp or application/json (default: the server's)"
    )
    call.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="to connect, and between bytes (default 120)"
    )
    call.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="run it as a job: print its id and URL, follow its progress (a bar on a terminal, a line per "
        "status otherwise), then write its result as without --async",
    )
    call.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="with --async: the same KEY and parameters again follow the same job instead of running another",
    )
    parity = commands.add_parser(
        "parity",
        help="replay requests against two servers and report any difference, breaking or additive",
        description=(
            "Compares status, the chosen headers (by meaning) and the body of each case, and whether "
            "validators and Accept-Ranges are there. Each difference is a line, 'breaking:' or 'additive:' "
            "(a 206 for a Range, a 422 where A crashed, a JSON error for an HTML page, an ETag added; "
            "the rules are in dualserve.parity's docstring)."
        ),
        epilog="exit status: 0 no breaking difference (--strict: no difference), 1 otherwise, 2 a server unreachable",
    )
    parity.add_argument("--a", required=True, help="the reference server, such as the legacy app")
    parity.add_argument("--b", required=True, help="the server held to it, such as the migrated app")
    parity.add_argument("--cases", required=True, help='a JSON list of {"method", "path", "headers", "json"}')
    parity.add_argument(
        "--header",
        action="append",
        dest="headers",
        metavar="NAME",
        help="a header to compare; repeat (default: content-type, content-disposition, content-length)",
    )
    parity.add_argument("--strict", action="store_true", help="exit 1 on any difference, additive ones too")
    return parser


def _cluster_arguments(command: argparse.ArgumentParser, purpose: str) -> None:
    command.add_argument(
        "--broker",
        default=None,
        metavar="redis://HOST:PORT/N",
        help=f"the Redis that Celery and the job records use ({purpose})",
    )
    command.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="where results live: a directory every machine shares, or s3://BUCKET/PREFIX (AWS_ENDPOINT_URL for "
        "a non-AWS S3)",
    )


def _parity(options: argparse.Namespace) -> int:
    import httpx2

    from .parity import DEFAULT_HEADERS, compare, load_cases

    cases = load_cases(options.cases)
    headers = [name.lower() for name in options.headers] if options.headers else DEFAULT_HEADERS
    try:
        differences = compare(options.a, options.b, cases, headers)
    except (OSError, httpx2.TransportError) as exc:
        print(f"dualserve parity: {exc}", file=sys.stderr)
        return 2
    for difference in differences:
        print(difference)
    breaking = sum(difference.breaking for difference in differences)
    additive = len(differences) - breaking
    print(f"{len(cases)} cases: {breaking} breaking, {additive} additive differences", file=sys.stderr)
    return 1 if breaking or (options.strict and differences) else 0


def _call(options: argparse.Namespace) -> int:
    """``dualserve call``: every failure is one line on stderr, with the exit status the epilog gives."""
    import httpx2

    from .client import Client, ServerError

    place = _CallPlace(f"{options.url.rstrip('/')}/{options.name}/{'jobs' if options.asynchronous else 'run'}")
    try:
        params = _call_params(options.param)
        target, folder = _call_target(options)
        if not options.timeout > 0:
            raise _CallError("--timeout must be above 0", 2)
        url = httpx2.URL(options.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise _CallError(f"--url needs http:// or https:// and a host, not {options.url!r}", 2)
        if options.accept is not None and not options.accept.isascii():
            raise _CallError(f"--accept {options.accept!r}: a header value is ASCII", 2)
        key = options.idempotency_key
        if key is not None and not options.asynchronous:
            raise _CallError("--idempotency-key needs --async: only a job is kept to be found again", 2)
        if key is not None and not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
            raise _CallError("--idempotency-key needs 1 to 255 printable ASCII characters", 2)
        accept = options.accept
        if accept is None and (target is None or folder or target.suffix.lower() == ".zip"):
            # Several items come as the server's zip, one as itself (a single image has no zip form).
            accept = "application/zip, */*;q=0.8"
        with Client(options.url, timeout=options.timeout) as client:
            if options.asynchronous:
                paths = _call_job(client, options, params, accept, target, folder, place)
            else:
                with client.stream(options.name, accept=accept, **params) as response:
                    paths = _call_answer(response, options.name, target, folder)
            for path in paths:
                print(path, file=sys.stderr)
        return 0
    except _CallError as exc:
        return _call_fail(place.after(str(exc)), exc.status)
    except ServerError as exc:
        reason = httpx2.codes.get_reason_phrase(exc.status_code)
        return _call_fail(f"the server answered {exc.status_code} {reason}: {_call_detail(exc.detail)}", 1)
    except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
        return _call_fail(f"--url {options.url!r}: {exc}", 2)
    except httpx2.ConnectTimeout:
        return _call_fail(
            place.after(f"cannot connect to {place.endpoint}: no connection within {options.timeout:g} s (--timeout)"),
            1,
        )
    except httpx2.TimeoutException:
        return _call_fail(
            place.after(f"no answer from {place.endpoint} within {options.timeout:g} s (allow more with --timeout)"),
            1,
        )
    except httpx2.ConnectError as exc:
        return _call_fail(place.after(f"cannot connect to {place.endpoint}: {exc}"), 1)
    except httpx2.HTTPError as exc:  # the connection broke, a bad answer, a proxy's refusal ...
        return _call_fail(place.after(f"the call to {place.endpoint} failed: {type(exc).__name__}: {exc}"), 1)
    except BrokenPipeError:
        # The reader went away (| head): say so once, without Python's own complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _call_fail(place.after("stdout was closed before the whole answer was written"), 1)
    except OSError as exc:  # the output could not be written: a full disk, a folder in the way ...
        return _call_fail(
            place.after(f"cannot write {exc.filename or options.output or 'stdout'}: {exc.strerror or exc}"), 1
        )
    except KeyboardInterrupt:
        return _call_fail(place.after("interrupted"), 130)


class _CallPlace:
    """How far ``dualserve call`` got: the URL a failure names, and the job once there is one, so
    that a failure after it was submitted says where the job (or its result) still is."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.job: Any = None  # a dualserve.client.Job
        self.fetching = False

    def after(self, message: str) -> str:
        job = self.job
        if job is None or job.status in ("failed", "canceled"):
            return message
        if self.fetching:
            return f"{message}; the result stays at {job.result_url} until {job.expires_at}"
        return f"{message}; job {job.id} goes on at {job.url} (DELETE that URL to cancel it)"


def _call_job(
    client: Any,
    options: argparse.Namespace,
    params: dict[str, Any],
    accept: str | None,
    target: Path | None,
    folder: bool,
    place: _CallPlace,
) -> list[Path]:
    """``--async``: submit, follow the job to its end, then save or print its result as ``/run``'s."""
    import httpx2

    from .client import Job

    try:
        job = client.submit(options.name, accept=accept, idempotency_key=options.idempotency_key, **params)
    except ValueError as exc:  # JSON that is not a job: not a dualserve server, or a proxy's page
        raise _CallError(f"{place.endpoint} did not answer a job: {exc}", 1) from exc
    place.job, place.endpoint = job, job.url
    print(f"dualserve call: job {job.id}: {job.url}", file=sys.stderr, flush=True)
    shown: list[str] = []

    def status_line(current: Job) -> None:
        place.job = current
        if current.status not in ("failed", "canceled") and (not shown or shown[-1] != current.status):
            shown.append(current.status)
            print(f"dualserve call: job {current.id} {current.status}", file=sys.stderr, flush=True)

    terminal = sys.stderr.isatty()
    try:
        job = client.wait(job, progress=None if terminal else status_line)
    except ValueError as exc:
        raise _CallError(f"{place.endpoint} did not answer a job: {exc}", 1) from exc
    if not terminal:
        status_line(job)
    place.job = job
    if job.status == "failed":
        error = job.error or {}
        status = error.get("status", 500)
        reason = httpx2.codes.get_reason_phrase(status) if isinstance(status, int) else ""
        detail = _call_detail(error.get("detail", "(no detail)"))
        raise _CallError(f"job {job.id} failed: {status} {reason}: {detail}", 1)
    if job.status == "canceled":
        raise _CallError(f"job {job.id} was canceled", 1)
    place.fetching, place.endpoint = True, job.result_url or f"{job.url}/result"
    with client.stream_result(job) as response:
        paths: list[Path] = _call_answer(response, options.name, target, folder)
    return paths


class _CallError(Exception):
    """A ``dualserve call`` failure already put in words, with its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _call_fail(message: str, status: int) -> int:
    print("dualserve call: " + " ".join(message.split()), file=sys.stderr)
    return status


def _call_detail(detail: Any, limit: int = 300) -> str:
    """The server's ``detail`` in one line: a 422's list as ``loc: msg`` pairs, a long page cut short."""
    if isinstance(detail, list) and detail and all(isinstance(error, dict) and "msg" in error for error in detail):
        text = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()) if part != 'body') or 'body'}: {error['msg']}"
            for error in detail
        )
    else:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    text = " ".join(text.split()) or "(no detail)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_params(items: Sequence[str]) -> dict[str, Any]:
    def not_a_number(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity are not JSON: send the word as a string

    params: dict[str, Any] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise _CallError(f"-p needs KEY=VALUE, not {item!r}", 2)
        if key in params:
            raise _CallError(f"-p {key} is given twice; send a list as -p {key}=[1,2]", 2)
        try:
            params[key] = json.loads(value, parse_constant=not_a_number)
        except ValueError:
            params[key] = value
    return params


def _call_target(options: argparse.Namespace) -> tuple[Path | None, bool]:
    """Where the answer goes (None: stdout) and whether that is a folder; checked before the call is made."""
    output: str | None = options.output
    if output is None or output == "-":
        return None, False
    target = Path(output)
    if output.endswith(("/", os.sep)) or target.is_dir():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _CallError(f"cannot create the folder {output}: {exc.strerror or exc}", 2) from exc
        if not os.access(target, os.W_OK):
            raise _CallError(f"cannot write in the folder {output}: permission denied", 2)
        return target, True
    parent = target.parent
    if not parent.is_dir():
        raise _CallError(f"cannot write {output}: no folder {str(parent)!r} (end -o with / to create one)", 2)
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise _CallError(f"cannot write {output}: permission denied", 2)
    return target, False


def _call_answer(response: Any, name: str, target: Path | None, folder: bool) -> list[Path]:
    """Save or print the answer (an ``httpx2.Response``, its body not read yet); return the files written."""
    import zipfile

    from .client import Result, _extension, _filename, interpret

    def decoded() -> Result:
        try:
            return interpret(response.status_code, response.headers, response.read())
        except (ValueError, zipfile.BadZipFile) as exc:  # the answer is not the JSON or zip it says it is
            raise _CallError(f"the server's {media_type} answer could not be decoded: {exc}", 1) from exc

    media_type = response.headers.get("content-type", "application/octet-stream")
    base = media_type.split(";", 1)[0].strip().lower()
    packed = base in ("application/zip", "application/json")  # can hold several items
    if 300 <= response.status_code < 400:
        location = response.headers.get("location", "nowhere")
        raise _CallError(f"the server answered {response.status_code}, a redirect to {location}", 1)
    if target is None:
        textual = base.startswith("text/") or base == "application/json" or base.endswith("+json")
        if sys.stdout.isatty() and not textual:
            what = "a zip of the items" if base == "application/zip" else media_type
            raise _CallError(f"the answer is {what}; save it with -o PATH (a folder for several items) or pipe it", 2)
        if sys.stdout.isatty() and base == "application/json":
            # On a terminal, indented (as httpie does); in a pipe, the server's bytes as they came.
            try:
                document = json.loads(response.read())  # the server's document, never the media it wraps
            except ValueError as exc:
                raise _CallError(f"the server's {media_type} answer is not JSON: {exc}", 1) from exc
            print(json.dumps(document, indent=2, ensure_ascii=False))
            return []
        ended = b"\n"
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()  # a stream's chunks reach the reader as they come
            ended = chunk[-1:] or ended
        if textual and ended != b"\n" and sys.stdout.isatty():
            sys.stdout.write("\n")
        return []
    if folder and not packed:
        path = target / (_filename(response.headers.get("content-disposition")) or f"{name}{_extension(base)}")
        return [_call_write(path, response)]
    if not folder and (not packed or target.suffix.lower() in (".zip", ".json")):
        expected = {".zip": "application/zip", ".json": "application/json"}.get(target.suffix.lower(), base)
        if base != expected and not base.endswith("+json"):
            print(f"dualserve call: note: the answer is {media_type}, saved as it came", file=sys.stderr)
        return [_call_write(target, response)]
    result = decoded()
    if folder:
        if len(result.items) > 1:
            return result.save_all(target)
        return [result.save(target / (result.filename or f"{name}{_extension(result.media_type)}"))]
    if len(result.items) > 1:
        raise _CallError(
            f"the answer holds {len(result.items)} items; nothing was written to {target}: give -o a folder "
            f"({target.with_suffix('')}/) for every item, or a .zip file for the server's zip",
            2,
        )
    return [result.save(target)]


def _call_write(path: Path, response: Any) -> Path:
    """Stream the body to ``path`` (a progress bar on a terminal); a partial file never stays behind."""
    from .client import CHUNK, _copy

    try:
        with path.open("wb") as file:
            _copy(response.iter_bytes(CHUNK), file, response.headers, path.name, None)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _uvicorn(options: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "dualserve.asgi:create_app",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_level=options.log_level,
        timeout_graceful_shutdown=options.graceful_timeout,
        access_log=False,  # dualserve.access writes it, with the request id (as under gunicorn)
        # A bounded request head and JSON errors; httptools, which uvicorn's "auto" picks, has neither.
        http="dualserve.servers.uvicorn:BoundedHttpToolsProtocol",
    )
    return 0


def _gunicorn(options: argparse.Namespace) -> int:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        print("--server gunicorn needs gunicorn: pip install 'dualserve[gunicorn]'", file=sys.stderr)
        return 2

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": f"{options.host}:{options.port}",
                "workers": options.workers,
                # gthread's threads (one worker holds a stream open and still answers other requests),
                # each given only a request that has arrived whole: a slow client never holds one.
                "worker_class": "dualserve.servers.gunicorn.WholeRequestWorker",
                "threads": options.threads or GUNICORN_THREADS,
                "graceful_timeout": max(1, math.ceil(options.graceful_timeout)),
                "loglevel": options.log_level,
                # dualserve writes the access line (logger dualserve.access), with the request id,
                # the same under every server: the server's own would be a second line.
                "accesslog": None,
                # A worker that exits (a restart, a crash) leaves its counts in /metrics' sum.
                "child_exit": _gunicorn_child_exit,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from .wsgi import create_app

            return create_app()

    Application().run()
    return 0


def _gunicorn_child_exit(server: Any, worker: Any) -> None:
    from .serving import metrics

    metrics.child_exit(worker.pid)


def _flask(options: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from .servers.werkzeug import JSONErrorRequestHandler
    from .wsgi import create_app

    run_simple(options.host, options.port, create_app(), threaded=True, request_handler=JSONErrorRequestHandler)
    return 0
