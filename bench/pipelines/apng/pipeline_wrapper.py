from bench import workload
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def run_api(self) -> bytes:
        return workload.PNG_100K
