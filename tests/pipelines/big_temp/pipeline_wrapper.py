"""A large temporary file, to be deleted however its download ends."""

import os
from pathlib import Path

from dualserve import BasePipelineWrapper, Media

SIZE = 64 * 1024 * 1024


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, directory: str) -> Media:
        path = Path(directory) / "big.bin"
        with path.open("wb") as file:
            file.truncate(SIZE)  # sparse: big to send, cheap to make
        os.utime(path)
        return Media(path, media_type="application/octet-stream", delete_after=True)
