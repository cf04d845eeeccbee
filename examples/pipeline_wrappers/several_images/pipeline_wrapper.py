"""Return several images: a zip by default, base64 JSON on request, or one image by ?index=."""

from __future__ import annotations

from PIL import Image, ImageDraw

from dualserve import BasePipelineWrapper

PALETTE = ["#e63946", "#2a9d8f", "#e9c46a", "#264653", "#f4a261", "#8ab17d"]


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, count: int = 3, size: int = 256) -> list[Image.Image]:
        """Colour swatches, numbered.

        Args:
            count: how many images, 1 to 6.
            size: the side of each square image in pixels, 16 to 1024.
        """
        count, size = max(1, min(6, count)), max(16, min(1024, size))
        images = []
        for index in range(count):
            image = Image.new("RGB", (size, size), PALETTE[index])
            ImageDraw.Draw(image).text((size // 2, size // 2), str(index + 1), fill="white", anchor="mm")
            images.append(image)
        return images
