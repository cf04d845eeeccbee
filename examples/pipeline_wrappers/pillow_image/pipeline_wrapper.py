"""Render a picture with Pillow and return the PIL image itself: dualserve encodes it (PNG by default)."""

from __future__ import annotations

from typing import Annotated

from PIL import Image, ImageColor, ImageDraw, ImageFont
from pydantic import AfterValidator, Field

from dualserve import BasePipelineWrapper

# Bounds a client cannot pass (a 422, before anything is drawn): Pillow renders the whole prompt
# into one bitmap, so a megabyte of text takes seconds and then fails as a decompression bomb, and
# the card's sides are allocated as given.
Prompt = Annotated[str, Field(max_length=2000)]
Side = Annotated[int, Field(ge=16, le=2048)]


def colour(value: str) -> str:
    ImageColor.getrgb(value)  # raises ValueError for a colour Pillow does not know: a 422, not a 500
    return value


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        # Loaded once per process, not per request.
        self.font = ImageFont.load_default(size=32)

    def run_api(
        self,
        prompt: Prompt,
        width: Side = 512,
        height: Side = 512,
        background: Annotated[str, AfterValidator(colour)] = "#1e3a5f",
    ) -> Image.Image:
        """Draw the prompt on a coloured card.

        Args:
            prompt: the text to draw, up to 2000 characters.
            width: width in pixels, 16 to 2048.
            height: height in pixels, 16 to 2048.
            background: any colour Pillow understands, such as "navy" or "#1e3a5f".
        """
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        for step in range(0, width + height, 24):
            draw.line([(step, 0), (step - height, height)], fill="#2b5283", width=6)
        draw.rounded_rectangle([width // 10, height // 3, width * 9 // 10, height * 2 // 3], radius=24, fill="white")
        draw.text((width // 2, height // 2), prompt, fill="#1e3a5f", font=self.font, anchor="mm")
        return image
