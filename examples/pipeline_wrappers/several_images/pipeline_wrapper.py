"""Return several images: a zip by default, base64 JSON on request, or one image by ?index=."""

from __future__ import annotations

from typing import Annotated

from PIL import Image, ImageDraw
from pydantic import Field

from dualserve import BasePipelineWrapper

PALETTE = ["#e63946", "#2a9d8f", "#e9c46a", "#264653", "#f4a261", "#8ab17d"]
# Each image is allocated and encoded: outside these bounds, a 422.
Count = Annotated[int, Field(ge=1, le=len(PALETTE))]
Size = Annotated[int, Field(ge=16, le=1024)]


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, count: Count = 3, size: Size = 256) -> list[Image.Image]:
        """Colour swatches, numbered.

        Args:
            count: how many images, 1 to 6.
            size: the side of each square image in pixels, 16 to 1024.
        """
        images = []
        for index in range(count):
            image = Image.new("RGB", (size, size), PALETTE[index])
            ImageDraw.Draw(image).text((size // 2, size // 2), str(index + 1), fill="white", anchor="mm")
            images.append(image)
        return images
