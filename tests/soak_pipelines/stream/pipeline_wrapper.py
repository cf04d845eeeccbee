"""A generator of 64 KiB chunks; it holds a temp file while it runs, so one never closed shows."""

import random
import tempfile
from collections.abc import Iterator

from dualserve import BasePipelineWrapper

CHUNK = 64 * 1024


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, seed: int, size: int = 2_000_000) -> Iterator[bytes]:
        data = random.Random(seed).randbytes(size)
        with tempfile.NamedTemporaryFile(prefix="soak-stream-"):  # deleted when the generator is closed
            for start in range(0, size, CHUNK):
                yield data[start : start + CHUNK]
