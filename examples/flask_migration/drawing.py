"""What both the legacy app and the migrated wrappers produce, defined once so their bytes match."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ASSETS = Path(__file__).parent / "assets"
#: The files /files/<name> serves; any other name is a 404.
SERVED_FILES = ("logo.png", "readme.txt")
REPORT_NAME = "Übersicht.csv"


def cat(size: int) -> Image.Image:
    size = max(32, min(1024, size))
    image = Image.new("RGB", (size, size), "#f4b942")
    draw = ImageDraw.Draw(image)
    unit = size // 8
    draw.ellipse([unit, 2 * unit, 7 * unit, 8 * unit - 1], fill="#333333")  # head
    draw.polygon([(unit, 3 * unit), (2 * unit, 0), (3 * unit, 3 * unit)], fill="#333333")  # ears
    draw.polygon([(5 * unit, 3 * unit), (6 * unit, 0), (7 * unit, 3 * unit)], fill="#333333")
    draw.ellipse([int(2.5 * unit), 4 * unit, int(3.5 * unit), 5 * unit], fill="#f4b942")  # eyes
    draw.ellipse([int(4.5 * unit), 4 * unit, int(5.5 * unit), 5 * unit], fill="#f4b942")
    return image


def report_csv() -> bytes:
    rows = [("month", "images"), ("Januar", "1200"), ("Februar", "1350"), ("März", "1610")]
    return "".join(f"{a},{b}\n" for a, b in rows).encode()
