from PIL import Image

from dualserve import BasePipelineWrapper

from bench import workload


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Image.Image:
        return workload.render()
