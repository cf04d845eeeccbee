"""How the legacy app is often first ported to FastAPI: StreamingResponse over a BytesIO.

Kept to show what the parity check catches: the image goes out chunked with no Content-Length
(BytesIO is iterated line by line, at every b"\\n"), HEAD answers 405, and the report's name
is lost. The migrated app (strangler.py) answers exactly as the legacy one does instead.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from drawing import ASSETS, cat, report_csv

app = FastAPI()


@app.get("/cat.png")
def cat_png(size: int = 256) -> StreamingResponse:
    buffer = io.BytesIO()
    cat(size).save(buffer, format="PNG")
    buffer.seek(0)
    return StreamingResponse(buffer, media_type="image/png")  # the anti-pattern


@app.get("/files/{name}")
def files(name: str) -> FileResponse:
    return FileResponse(ASSETS / name)


@app.get("/report")
def report() -> StreamingResponse:
    return StreamingResponse(io.BytesIO(report_csv()), media_type="text/csv")
