"""The work every variant does, defined once so the servers differ only in how they serve it."""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from PIL import Image, ImageDraw

#: A 100 KB PNG: noise does not compress, so the size holds whatever zlib level made it.
PNG_100K: bytes
FILE_SIZE = 500 * 1024 * 1024
STREAM_SIZE = 256 * 1024 * 1024
STREAM_CHUNK = 64 * 1024
DATA_DIR = Path(os.environ.get("DUALSERVE_BENCH_DATA", Path(__file__).parent / ".data"))
BIG_FILE = DATA_DIR / "big.bin"


def _png_100k() -> bytes:
    noise = random.Random(0).randbytes(182 * 182 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (182, 182), noise).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_100K = _png_100k()


def render(size: int = 512) -> Image.Image:
    """A 512x512 picture with shapes and text: the kind of image a Pillow endpoint draws."""
    image = Image.new("RGB", (size, size), "#1e3a5f")
    draw = ImageDraw.Draw(image)
    for step in range(0, 2 * size, 24):
        draw.line([(step, 0), (step - size, size)], fill="#2b5283", width=6)
    for index in range(12):
        x = (index * 97) % size
        draw.ellipse([x, x // 2, x + 60, x // 2 + 60], fill=(index * 20, 120, 255 - index * 20))
    draw.rounded_rectangle([50, 200, size - 50, 312], radius=24, fill="white")
    draw.text((size // 2, 256), "dualserve benchmark", fill="#1e3a5f", anchor="mm")
    return image


def render_png() -> bytes:
    buffer = io.BytesIO()
    render().save(buffer, format="PNG")
    return buffer.getvalue()


_CHUNK = b"s" * STREAM_CHUNK


def stream() -> Iterator[bytes]:
    for _ in range(STREAM_SIZE // STREAM_CHUNK):
        yield _CHUNK


async def astream() -> AsyncIterator[bytes]:
    """:func:`stream` as an async generator, as a wrapper relaying an async client's chunks is."""
    for _ in range(STREAM_SIZE // STREAM_CHUNK):
        yield _CHUNK


#: What a call to an inference provider costs in waiting: the "slow upstream" scenario awaits it.
UPSTREAM_SECONDS = 0.1


async def slow_upstream() -> bytes:
    await asyncio.sleep(UPSTREAM_SECONDS)
    return PNG_100K


def ensure_big_file() -> Path:
    if not BIG_FILE.exists() or BIG_FILE.stat().st_size != FILE_SIZE:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        block = random.Random(1).randbytes(1024 * 1024)
        with BIG_FILE.open("wb") as file:
            for _ in range(FILE_SIZE // len(block)):
                file.write(block)
    return BIG_FILE
