"""The migration in progress: one FastAPI app in front of the legacy Flask app (a strangler fig).

Routes already migrated are dualserve pipelines, served at their legacy URLs (and at
``/{name}/run``); every other path falls through to the legacy Flask app, mounted with
dualserve's a2wsgi layer. Move a route by adding a pipeline and one ``add_pipeline_route`` line;
when nothing falls through any more, drop the mount, and Flask with it.

    uvicorn --app-dir examples/flask_migration strangler:app --port 1416
"""

from __future__ import annotations

from pathlib import Path

from legacy.app import app as legacy_app

from dualserve import fastapi_app
from dualserve.frontends.wsgi_in_asgi import WSGIMount

app = fastapi_app(Path(__file__).parent / "pipelines")
app.add_pipeline_route("/cat.png", "cat")
app.add_pipeline_route("/files/{name}", "files")
app.add_pipeline_route("/report", "report")
# Everything not migrated yet: the legacy app, unchanged.
app.mount("/", WSGIMount(legacy_app))
