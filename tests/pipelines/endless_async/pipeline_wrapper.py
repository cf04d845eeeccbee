"""The async twin of `endless`."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def run_api(self, marker: str) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 1024
                await asyncio.sleep(0.02)
        finally:
            Path(marker).write_text("closed")
