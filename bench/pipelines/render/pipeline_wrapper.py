from PIL import Image

from bench import workload
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Image.Image:
        return workload.render()
