from bench import workload
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def run_api(self) -> bytes:
        return await workload.slow_upstream()
