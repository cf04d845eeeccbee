from pathlib import Path

from dualserve import BasePipelineWrapper

from bench import workload


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Path:
        return workload.BIG_FILE
