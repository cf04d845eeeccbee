"""Render a picture with Pillow and return the PIL image itself: dualserve encodes it (PNG by default)."""

from __future__ import annotations

from typing import Annotated

from PIL import Image, ImageColor, ImageDraw, ImageFont
from pydantic import AfterValidator

from dualserve import BasePipelineWrapper


def colour(value: str) -> str:
    ImageColor.getrgb(value)  # raises ValueError for a colour Pillow does not know: a 422, not a 500
    return value


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        # Loaded once per process, not per request.
        self.font = ImageFont.load_default(size=32)

    def run_api(
        self,
        prompt: str,
        width: int = 512,
        height: int = 512,
        background: Annotated[str, AfterValidator(colour)] = "#1e3a5f",
    ) -> Image.Image:
        """Draw the prompt on a coloured card.

        Args:
            prompt: the text to draw.
            width: width in pixels, 16 to 2048.
            height: height in pixels, 16 to 2048.
            background: any colour Pillow understands, such as "navy" or "#1e3a5f".
        """
        width, height = (max(16, min(2048, side)) for side in (width, height))
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        for step in range(0, width + height, 24):
            draw.line([(step, 0), (step - height, height)], fill="#2b5283", width=6)
        draw.rounded_rectangle([width // 10, height // 3, width * 9 // 10, height * 2 // 3], radius=24, fill="white")
        draw.text((width // 2, height // 2), prompt, fill="#1e3a5f", font=self.font, anchor="mm")
        return image
