from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    """Returns at once: a job of it costs only the job machinery (bench.cluster's queue cost)."""

    def run_api(self) -> bytes:
        return b"ok"
