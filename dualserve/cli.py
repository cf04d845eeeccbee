"""``dualserve run``: serve a pipelines directory with uvicorn, gunicorn or Flask's server."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, config

__all__ = ["main"]

SERVERS = ("uvicorn", "gunicorn", "flask")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
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
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    return {"uvicorn": _uvicorn, "gunicorn": _gunicorn, "flask": _flask}[options.server](options)


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
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long open responses may take to finish before they are cut (uvicorn, gunicorn)",
    )
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


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
                # Threads let one worker hold a stream open and still answer other requests.
                "worker_class": "gthread",
                "threads": 8,
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

    from .wsgi import create_app

    run_simple(options.host, options.port, create_app(), threaded=True)
    return 0
