from collections.abc import Iterator

from bench import workload
from dualserve import BasePipelineWrapper, produces


class PipelineWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    def run_api(self) -> Iterator[bytes]:
        return workload.stream()
