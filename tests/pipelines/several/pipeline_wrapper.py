"""Three images: a zip by default, JSON on request, one by ?index=."""

from PIL import Image

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, count: int = 3) -> list[Image.Image]:
        return [Image.new("RGB", (10 + index, 10), (index * 60, 0, 0)) for index in range(count)]
