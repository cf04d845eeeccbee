"""Fails after its first chunk: the client sees a cut-off body, the log says why."""

from collections.abc import Iterator

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("the disk is on fire")
