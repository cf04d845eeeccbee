"""A stream with no end: only a client that goes away stops it. Its finally leaves a marker."""

import time
from collections.abc import Iterator
from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, marker: str) -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 1024
                time.sleep(0.02)
        finally:
            Path(marker).write_text("closed")
