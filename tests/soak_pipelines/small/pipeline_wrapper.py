"""Bytes from memory: the seed decides every byte, so the client can check them."""

import random

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, seed: int, size: int = 10_000) -> bytes:
        return random.Random(seed).randbytes(size)
