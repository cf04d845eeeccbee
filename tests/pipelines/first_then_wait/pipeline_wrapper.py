"""Sends one chunk, then waits for a signal only a client that got that chunk can give."""

import time
from collections.abc import Iterator
from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, signal: str) -> Iterator[bytes]:
        yield b"first;"
        deadline = time.monotonic() + 20
        while not Path(signal).exists():
            if time.monotonic() > deadline:
                yield b"timeout"
                return
            time.sleep(0.01)
        yield b"released"
