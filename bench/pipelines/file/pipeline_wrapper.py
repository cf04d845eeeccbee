from pathlib import Path

from bench import workload
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Path:
        return workload.BIG_FILE
