"""Wrappers written the way Hayhooks' documentation writes them: FastAPI responses from run_api."""

from __future__ import annotations

import io
import os
import tempfile

from fastapi.responses import FileResponse, Response, StreamingResponse
from PIL import Image
from starlette.background import BackgroundTask

from dualserve import BasePipelineWrapper
from tests.wrappers import png_bytes


class ImageFileWrapper(BasePipelineWrapper):
    """Hayhooks' image_generation example, with Pillow standing in for the Inference API."""

    def setup(self) -> None:
        self.created: list[str] = []

    def run_api(self, prompt: str, width: int = 16, height: int = 16) -> FileResponse:
        image = Image.new("RGB", (width, height), "orange")
        with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as tmp:
            image.save(tmp, format="PNG")
        self.created.append(tmp.name)
        return FileResponse(path=tmp.name, media_type="image/png", filename="generated_image.png")


class CleanFileWrapper(BasePipelineWrapper):
    """The same, deleting its temp file with a background task, as a careful user would."""

    def run_api(self, directory: str) -> FileResponse:
        path = os.path.join(directory, "out.png")
        with open(path, "wb") as file:
            file.write(png_bytes(3, 3))
        return FileResponse(path, media_type="image/png", background=BackgroundTask(os.unlink, path))


class BytesResponseWrapper(BasePipelineWrapper):
    def run_api(self, prompt: str) -> Response:
        image_bytes = png_bytes(6, 6)
        return Response(
            content=image_bytes,
            media_type="image/png",
            headers={"Content-Disposition": 'inline; filename="image.png"'},
        )


class AudioStreamWrapper(BasePipelineWrapper):
    def run_api(self, query: str) -> StreamingResponse:
        audio_buffer = b"RIFF" + b"\0" * 4 + b"WAVE" + b"x" * 20000
        return StreamingResponse(
            content=io.BytesIO(audio_buffer),
            media_type="audio/wav",
            headers={"Content-Disposition": 'attachment; filename="audio.wav"'},
        )


class ExistingFileWrapper(BasePipelineWrapper):
    """A FileResponse of a file that was there before the run: never deleted."""

    def run_api(self, path: str) -> FileResponse:
        return FileResponse(path, media_type="application/octet-stream")


class KeptImageFileWrapper(ImageFileWrapper):
    """Hayhooks' example, opting out: its temp files are its own to delete."""

    delete_temp_responses = False


WRAPPERS = {
    "hh_image_file": ImageFileWrapper,
    "hh_existing_file": ExistingFileWrapper,
    "hh_kept_file": KeptImageFileWrapper,
    "hh_clean_file": CleanFileWrapper,
    "hh_bytes": BytesResponseWrapper,
    "hh_audio": AudioStreamWrapper,
}
