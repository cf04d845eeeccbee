from collections.abc import AsyncIterator

from bench import workload
from dualserve import BasePipelineWrapper, produces


class PipelineWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    async def run_api(self) -> AsyncIterator[bytes]:
        async for chunk in workload.astream():
            yield chunk
