"""The core decides everything without a web framework: importing it must not need one.

Werkzeug is allowed: like Flask's own sansio package, the core uses its sans-IO ``werkzeug.http``
parsers (Range, ETags, dates), the framework-neutral library both Flask and dualserve build on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CORE = [
    "dualserve",
    "dualserve.results",
    "dualserve.http",
    "dualserve.service",
    "dualserve.pipelines",
    "dualserve.params",
    "dualserve.replies",
    "dualserve.media",
    "dualserve.sniff",
]


def test_core_imports_no_web_framework() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("flask", "fastapi", "starlette", "a2wsgi", "uvicorn", "gunicorn", "anyio"):
            sys.modules[name] = None
        import importlib
        for module in {CORE!r}:
            importlib.import_module(module)
        from dualserve.results import resolve
        from dualserve.http import render
        from dualserve.requests import Request
        reply = render(resolve(b"%PDF-1.4"), Request("GET", {{}}))
        assert reply.headers[0] == ("content-type", "application/pdf"), reply.headers
        print("ok")
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
