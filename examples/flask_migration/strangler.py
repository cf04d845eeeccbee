"""The migration in progress: one FastAPI app in front of the legacy Flask app (a strangler fig).

Routes already migrated are dualserve pipelines, served at their legacy URLs (and at
``/{name}/run``); every other path falls through to the legacy Flask app, mounted with
dualserve's a2wsgi layer. Move a route by adding a pipeline and one ``add_pipeline_route`` line
in :func:`migrate`; when nothing falls through any more, drop the mount, and Flask with it.

    .venv/bin/uvicorn --app-dir examples/flask_migration strangler:unmigrated --port 1416  # step 3
    .venv/bin/uvicorn --app-dir examples/flask_migration strangler:app --port 1416         # step 4
"""

from __future__ import annotations

from pathlib import Path

from legacy.app import app as legacy_app

from dualserve import fastapi_app
from dualserve.frontends.fastapi import DualserveFastAPI
from dualserve.frontends.wsgi_in_asgi import WSGIMount

PIPELINES = Path(__file__).parent / "pipelines"


def migrate(app: DualserveFastAPI) -> None:
    """The routes migrated so far, each at its legacy URL and keeping what it promised clients.

    The legacy routes are ``@app.get`` views, so each answers GET and HEAD and a 405 with
    ``Allow`` to anything else, as Flask did (without ``methods`` a pipeline also takes POST).
    """
    app.add_pipeline_route("/cat.png", "cat", methods=("GET",))
    app.add_pipeline_route("/files/{name}", "files", methods=("GET",))  # <name> is run_api's name
    app.add_pipeline_route("/report", "report", methods=("GET",))
    # jsonify's bytes: sorted keys, ASCII escapes and its trailing newline.
    app.add_pipeline_route("/health", "health", methods=("GET",), json="flask")


def strangler(migrated: bool = True) -> DualserveFastAPI:
    app = fastapi_app(PIPELINES)
    if migrated:
        migrate(app)
    # Everything not migrated yet: the legacy app, unchanged.
    app.mount("/", WSGIMount(legacy_app))
    return app


#: Step 3 of the README: nothing migrated yet, every legacy URL falls through to Flask.
unmigrated = strangler(migrated=False)
#: Step 4 on: the routes in :func:`migrate` answered by dualserve, the rest by Flask.
app = strangler()
