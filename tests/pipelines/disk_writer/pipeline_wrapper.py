"""Writes its result to a temp file first, as renderers do; under a full disk the write fails."""

import os
import tempfile
from pathlib import Path

from dualserve import BasePipelineWrapper, Media


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, size: int = 4096) -> Media:
        handle, name = tempfile.mkstemp(suffix=".bin")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(os.urandom(size))
        except OSError:
            Path(name).unlink()  # a wrapper's own clean-up on failure; dualserve then answers 500
            raise
        return Media(Path(name), media_type="application/octet-stream", delete_after=True)
