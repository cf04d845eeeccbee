"""Bytes that differ on every run, like a sampler with a random seed: 2 MiB of random bytes
followed by their own SHA-256. A file that mixes two runs fails that check."""

import hashlib
import os

from dualserve import BasePipelineWrapper, produces

SIZE = 2 * 1024 * 1024


class PipelineWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    def run_api(self) -> bytes:
        body = os.urandom(SIZE)
        return body + hashlib.sha256(body).digest()
