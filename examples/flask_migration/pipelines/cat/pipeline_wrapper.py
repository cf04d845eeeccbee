"""Migrated /cat.png: the drawing, returned as a PIL image; dualserve encodes and sends it."""

import sys
from pathlib import Path

from PIL import Image

from dualserve import BasePipelineWrapper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from drawing import cat


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, size: int = 256) -> Image.Image:
        """A cat, drawn.

        Args:
            size: the side in pixels, 32 to 1024.
        """
        return cat(size)
