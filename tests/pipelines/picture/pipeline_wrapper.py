"""A PIL image, for the real-server tests."""

from PIL import Image

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, width: int = 32, height: int = 24) -> Image.Image:
        return Image.new("RGB", (width, height), "purple")
