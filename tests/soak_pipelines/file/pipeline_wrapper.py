"""A temp file handed over with delete_after, as a renderer writing to disk does."""

import random
import tempfile
from pathlib import Path

from dualserve import BasePipelineWrapper, Media


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, seed: int, size: int = 1_000_000) -> Media:
        with tempfile.NamedTemporaryFile(prefix="soak-file-", suffix=".bin", delete=False) as file:
            file.write(random.Random(seed).randbytes(size))
        return Media(Path(file.name), media_type="application/octet-stream", delete_after=True)
