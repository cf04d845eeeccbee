"""Return PNG bytes: dualserve recognises PNG from its magic bytes, no media type needed."""

from __future__ import annotations

import io

from PIL import Image

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, width: int = 256, height: int = 64) -> bytes:
        """A horizontal gradient, encoded by the wrapper itself.

        Args:
            width: width in pixels, 1 to 4096.
            height: height in pixels, 1 to 4096.
        """
        width, height = max(1, min(4096, width)), max(1, min(4096, height))
        gradient = Image.linear_gradient("L").rotate(90).resize((width, height))
        buffer = io.BytesIO()
        Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient)).save(
            buffer, format="PNG"
        )
        return buffer.getvalue()
