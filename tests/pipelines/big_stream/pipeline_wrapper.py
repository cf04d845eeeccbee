"""A large stream of known bytes, for relaying."""

from collections.abc import Iterator

from dualserve import BasePipelineWrapper, produces

CHUNK = bytes(range(256)) * 256  # 64 KiB


class PipelineWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    def run_api(self, megabytes: int = 200) -> Iterator[bytes]:
        for _ in range(megabytes * 16):
            yield CHUNK
