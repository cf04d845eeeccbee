"""The core decides everything without a web framework: importing it must not need one.

Werkzeug is allowed: like Flask's own sansio package, the core uses its sans-IO ``werkzeug.http``
parsers (Range, ETags, dates), the framework-neutral library both Flask and dualserve build on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dualserve.core

CORE_DIR = Path(dualserve.core.__file__).parent
# Every module of the core, found on disk, so a new one is checked without being listed here;
# and the public surface, which a wrapper imports.
CORE = ["dualserve", *(f"dualserve.core.{path.stem}" for path in sorted(CORE_DIR.glob("*.py")))]


def test_the_core_is_every_module_of_its_folder() -> None:
    assert len(CORE) > 10 and "dualserve.core.returns" in CORE


def test_core_imports_no_web_framework() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("flask", "fastapi", "starlette", "a2wsgi", "uvicorn", "gunicorn", "anyio"):
            sys.modules[name] = None
        import importlib
        for module in {CORE!r}:
            importlib.import_module(module)
        from dualserve.core.returns import resolve
        from dualserve.core.http import render
        from dualserve.core.request import Request
        reply = render(resolve(b"%PDF-1.4"), Request("GET", {{}}))
        assert reply.headers[0] == ("content-type", "application/pdf"), reply.headers
        print("ok")
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
