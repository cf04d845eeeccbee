"""Return PNG bytes: dualserve recognises PNG from its magic bytes, no media type needed."""

from __future__ import annotations

import io
from typing import Annotated

from PIL import Image
from pydantic import Field

from dualserve import BasePipelineWrapper

# The image is allocated and encoded as large as asked: outside these bounds, a 422.
Side = Annotated[int, Field(ge=1, le=4096)]


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, width: Side = 256, height: Side = 64) -> bytes:
        """A horizontal gradient, encoded by the wrapper itself.

        Args:
            width: width in pixels, 1 to 4096.
            height: height in pixels, 1 to 4096.
        """
        gradient = Image.linear_gradient("L").rotate(90).resize((width, height))
        buffer = io.BytesIO()
        Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient)).save(
            buffer, format="PNG"
        )
        return buffer.getvalue()
