"""Encoding PIL images and numpy arrays. No web framework.

Pillow and numpy are imported only when a result is one of theirs: a wrapper that returns bytes
never pays for either, and ``is_image`` answers without importing anything.
"""

from __future__ import annotations

import io
import sys
from typing import Any

__all__ = ["FORMATS", "PNG_COMPRESS_LEVEL", "QUALITY", "encode_image", "format_for", "is_image"]

#: Output formats by name, with their media type and Pillow's format name.
FORMATS = {
    "png": ("image/png", "PNG"),
    "jpeg": ("image/jpeg", "JPEG"),
    "jpg": ("image/jpeg", "JPEG"),
    "webp": ("image/webp", "WEBP"),
}

#: zlib level for PNG: Pillow's own default, the usual size/speed balance.
PNG_COMPRESS_LEVEL = 6
#: Quality for JPEG and WebP when ``Media(quality=...)`` is not given.
QUALITY = 90


def is_image(value: Any) -> bool:
    """Whether ``value`` is a PIL image or a numpy ``uint8`` array of 2 or 3 dimensions."""
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(value, pil.Image):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray) and value.ndim in (2, 3)


def format_for(media_type: str | None) -> str | None:
    """The format name for an image media type, or ``None`` if it is not one we encode."""
    if media_type is None:
        return None
    base = media_type.split(";", 1)[0].strip().lower()
    return next((name for name, (known, _) in FORMATS.items() if known == base), None)


def encode_image(value: Any, format: str = "png", quality: int | None = None) -> tuple[bytes, str]:
    """Encode ``value`` as ``format``; answer the bytes and their media type."""
    from PIL import Image

    try:
        media_type, pil_format = FORMATS[format.lower()]
    except KeyError:
        raise ValueError(f"Unknown image format {format!r}; use one of png, jpeg, webp.") from None
    image = value if isinstance(value, Image.Image) else _from_array(value)
    options: dict[str, Any] = {}
    if pil_format == "PNG":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    else:
        options["quality"] = QUALITY if quality is None else quality
        if pil_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
            # JPEG has no alpha or palette: flatten onto white instead of failing.
            image = _flatten(image)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue(), media_type


def _from_array(array: Any) -> Any:
    from PIL import Image

    if array.dtype.name != "uint8":
        raise TypeError(f"Only uint8 arrays can be served as images, not {array.dtype.name}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise TypeError(f"An image array needs 1, 3 or 4 channels, not {array.shape[2]}.")
    return Image.fromarray(array)


def _flatten(image: Any) -> Any:
    from PIL import Image

    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
