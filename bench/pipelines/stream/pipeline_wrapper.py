from collections.abc import Iterator

from dualserve import BasePipelineWrapper, produces

from bench import workload


class PipelineWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    def run_api(self) -> Iterator[bytes]:
        return workload.stream()
