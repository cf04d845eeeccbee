"""A Pillow image, encoded per request; its pixels come from the seed."""

import random

from PIL import Image

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, seed: int, side: int = 128) -> Image.Image:
        return Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
