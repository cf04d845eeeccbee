"""Encoding PIL images and numpy arrays. No web framework.

Pillow and numpy are imported only when a result is one of theirs: a wrapper that returns bytes
never pays for either, and ``is_image`` answers without importing anything.
"""

from __future__ import annotations

import io
import sys
from typing import Any

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "FORMATS",
    "PNG_COMPRESS_LEVEL",
    "QUALITY",
    "bomb_detail",
    "check_image",
    "encode_image",
    "format_for",
    "is_bomb",
    "is_image",
    "limit_pixels",
]

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
#: 64 megapixels (8000 x 8000): more than any camera's photo; decoded as RGBA, 256 MB.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000

_max_pixels = DEFAULT_MAX_IMAGE_PIXELS


def limit_pixels(max_pixels: int) -> None:
    """Bound the images this process decodes (uploads opened with Pillow) and serves.

    Pillow's own bound is per process, so this one is too. Pillow only warns between its limit and
    twice that; the warning is made an error, so a 13000 x 13000 PNG of 657 KB (2 GB once decoded)
    is refused when it is opened, before a byte of it is decoded.
    """
    import warnings

    from PIL import Image

    global _max_pixels
    _max_pixels = max_pixels
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def is_bomb(exc: BaseException) -> bool:
    """Whether ``exc`` is Pillow refusing an image over the pixel limit (an upload, or text drawn
    into a bitmap that would be too large)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(exc, (pil.DecompressionBombError, pil.DecompressionBombWarning))


def bomb_detail() -> str:
    return f"The image is larger than the limit of {_max_pixels} pixels."


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
    image = _convert(value if isinstance(value, Image.Image) else _from_array(value), pil_format)
    options: dict[str, Any] = {}
    if pil_format == "PNG":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    else:
        options["quality"] = QUALITY if quality is None else quality
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue(), media_type


def check_image(value: Any) -> None:
    """Raise ``TypeError`` for an array that cannot be an image, or an image over the pixel limit,
    before any header is decided."""
    width, height = value.size if hasattr(value, "getbands") else (value.shape[1], value.shape[0])
    if width * height > _max_pixels:
        raise TypeError(f"The result image is {width}x{height} pixels, over the limit of {_max_pixels}.")
    if sys.modules.get("numpy") is not None and not hasattr(value, "getbands"):
        if value.dtype.name != "uint8":
            raise TypeError(f"Only uint8 arrays can be served as images, not {value.dtype.name}.")
        if value.ndim == 3 and value.shape[2] not in (1, 3, 4):
            raise TypeError(f"An image array needs 1, 3 or 4 channels, not {value.shape[2]}.")


def _from_array(array: Any) -> Any:
    from PIL import Image

    check_image(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    # H x W x 3 is taken as RGB. OpenCV arrays are BGR: pass cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    # (or array[..., ::-1]) so that red stays red.
    return Image.fromarray(array)


# The modes each encoder writes as they are; anything else is converted first.
_WRITABLE = {
    "PNG": {"1", "L", "LA", "I;16", "P", "RGB", "RGBA"},
    "JPEG": {"L", "RGB", "CMYK"},
    "WEBP": {"RGB", "RGBA"},
}


def _convert(image: Any, pil_format: str) -> Any:
    if image.mode in _WRITABLE[pil_format]:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # 16- or 32-bit samples: scale to 8 bits rather than let Pillow clip them.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        return image if image.mode in _WRITABLE[pil_format] else image.convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "P") and (image.mode != "P" or "transparency" in image.info)
    if pil_format == "JPEG":
        # JPEG has no alpha: flatten onto white instead of failing (or turning transparency black).
        return _flatten(image) if has_alpha or image.mode == "P" else image.convert("RGB")
    if pil_format == "WEBP":
        return image.convert("RGBA" if has_alpha else "RGB")
    return image.convert("RGBA" if has_alpha else "RGB")


def _flatten(image: Any) -> Any:
    from PIL import Image

    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
