"""An uploaded image, made into a thumbnail: multipart/form-data in, an image out."""

from __future__ import annotations

from typing import Annotated, Literal

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field

from dualserve import BasePipelineWrapper, UploadFile, ValidationError

# The result's longest side ("cover" scales a small picture up to it): outside these bounds, a 422.
# The upload itself is bounded by the server: --max-body-size, and --max-image-pixels for what
# Pillow decodes (a 413 past it).
Size = Annotated[int, Field(ge=16, le=1024)]


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, image: UploadFile, size: Size = 256, mode: Literal["fit", "cover"] = "fit") -> Image.Image:
        """Shrink an uploaded image.

        Args:
            image: the picture (PNG, JPEG, WebP, GIF ...).
            size: the longest side of the result, 16 to 1024 pixels.
            mode: "fit" keeps the whole picture; "cover" crops it to a square.
        """
        try:
            picture = Image.open(image.stream)
            picture.load()
        except (UnidentifiedImageError, OSError):
            # The contract's 422 shape, as for any invalid argument.
            problem = f"{image.filename or 'The upload'} is not an image Pillow can read."
            raise ValidationError([{"loc": ["body", "image"], "msg": problem, "type": "image_invalid"}]) from None
        picture = ImageOps.exif_transpose(picture)
        if mode == "cover":
            return ImageOps.fit(picture, (size, size))
        picture.thumbnail((size, size))
        return picture
