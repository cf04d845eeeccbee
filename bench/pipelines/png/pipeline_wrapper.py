from dualserve import BasePipelineWrapper

from bench import workload


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> bytes:
        return workload.PNG_100K
