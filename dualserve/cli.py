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
    if options.max_body_size is not None:
        if options.max_body_size < 0:
            parser.error("--max-body-size must be 0 or more")
        os.environ[config.MAX_BODY_SIZE_ENV] = str(options.max_body_size)
    if options.timeout is not None:
        if options.timeout <= 0:
            parser.error("--timeout must be above 0")
        os.environ[config.TIMEOUT_ENV] = str(options.timeout)
    for flag, value, name in (
        ("--threads", options.threads, config.THREADS_ENV),
        ("--max-streams", options.max_streams, config.MAX_STREAMS_ENV),
        ("--max-image-pixels", options.max_image_pixels, config.MAX_IMAGE_PIXELS_ENV),
    ):
        if value is not None:
            if value < 1:
                parser.error(f"{flag} must be 1 or more")
            os.environ[name] = str(value)
    if options.server == "flask" and options.threads is not None:
        parser.error("--server flask starts a thread per request and cannot cap them; use uvicorn or gunicorn")
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    _tune_malloc()
    return {"uvicorn": _uvicorn, "gunicorn": _gunicorn, "flask": _flask}[options.server](options)


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
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    call = commands.add_parser(
        "call",
        help="call a pipeline and save or print its result",
        description="POST the parameters as JSON to NAME/run. A value that reads as JSON (256, true, "
        '[1,2], {"a":1}) is sent as that JSON; anything else as a string.',
    )
    call.add_argument("name", help="the pipeline")
    call.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter; repeat for more"
    )
    call.add_argument("-o", "--output", help="save the result here (a folder gets the server's file name)")
    call.add_argument("--url", default="http://127.0.0.1:1416", help="the server, with /flask or /fastapi if mounted")
    call.add_argument("--accept", help="the media type to ask for, such as image/webp")
    call.add_argument("--timeout", type=float, default=120.0)
    parity = commands.add_parser(
        "parity",
        help="replay requests against two servers and report any difference",
        description="Compares status, the chosen headers (by meaning) and the body of each case.",
    )
    parity.add_argument("--a", required=True, help="the first server, such as the legacy app")
    parity.add_argument("--b", required=True, help="the second server, such as the migrated app")
    parity.add_argument("--cases", required=True, help='a JSON list of {"method", "path", "headers", "json"}')
    parity.add_argument(
        "--header",
        action="append",
        dest="headers",
        metavar="NAME",
        help="a header to compare; repeat (default: content-type, content-disposition, content-length)",
    )
    return parser


def _parity(options: argparse.Namespace) -> int:
    from .parity import DEFAULT_HEADERS, compare, load_cases

    cases = load_cases(options.cases)
    headers = [name.lower() for name in options.headers] if options.headers else DEFAULT_HEADERS
    try:
        differences = compare(options.a, options.b, cases, headers)
    except OSError as exc:
        print(f"dualserve parity: {exc}", file=sys.stderr)
        return 2
    for line in differences:
        print(line)
    print(f"{len(cases)} cases, {len(differences)} differences", file=sys.stderr)
    return 1 if differences else 0


def _call(options: argparse.Namespace) -> int:
    from .client import Client, ServerError

    params: dict[str, Any] = {}
    for item in options.param:
        key, separator, value = item.partition("=")
        if not separator or not key:
            print(f"dualserve call: -p needs KEY=VALUE, not {item!r}", file=sys.stderr)
            return 2
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    try:
        with Client(options.url, timeout=options.timeout) as client:
            if options.output and "json" not in (options.accept or ""):
                # Binary answers stream to disk; a JSON answer is decoded first (below).
                path = client.download(options.name, options.output, accept=options.accept, **params)
                print(path, file=sys.stderr)
                return 0
            result = client.run(options.name, accept=options.accept, **params)
    except ServerError as exc:
        print(f"dualserve call: the server answered {exc.status_code}: {json.dumps(exc.detail)}", file=sys.stderr)
        return 1
    except OSError as exc:  # connection refused, unreadable output path ...
        print(f"dualserve call: {exc}", file=sys.stderr)
        return 1
    if options.output:
        print(result.save(options.output), file=sys.stderr)
    elif result.media_type.startswith(("application/json", "text/")):
        sys.stdout.write(result.content.decode("utf-8", "replace") + "\n")
    elif sys.stdout.isatty():
        print(f"dualserve call: the result is {result.media_type}; save it with -o FILE", file=sys.stderr)
        return 2
    else:
        sys.stdout.buffer.write(result.content)
    return 0


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
                "accesslog": "-" if options.log_level in ("debug", "info") else None,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from .wsgi import create_app

            return create_app()

    Application().run()
    return 0


def _flask(options: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from .servers.werkzeug import JSONErrorRequestHandler
    from .wsgi import create_app

    run_simple(options.host, options.port, create_app(), threaded=True, request_handler=JSONErrorRequestHandler)
    return 0
