"""A PDF built with Pillow: one page per line of the report, saved to memory and sent as a download."""

from __future__ import annotations

import io
from typing import Annotated

from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from dualserve import BasePipelineWrapper, Media

# Pillow renders each text into one bitmap and every page is a 1240x1754 image in memory: past
# these bounds, a 422 before anything is drawn. The title is also the file's name.
Title = Annotated[str, Field(max_length=200)]
Line = Annotated[str, Field(max_length=1000)]
Lines = Annotated[list[Line], Field(max_length=20)]


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.title_font = ImageFont.load_default(size=48)
        self.body_font = ImageFont.load_default(size=28)

    def run_api(self, title: Title = "Report", lines: Lines | None = None, download: bool = True) -> Media:
        """A small A4 report, one line of text per page.

        Args:
            title: printed at the top of every page, up to 200 characters.
            lines: the pages' text, up to 20 lines of 1000 characters; one page with the title alone when empty.
            download: send as an attachment (True) or show in the browser (False).
        """
        pages = []
        for number, line in enumerate(lines or [""], start=1):
            page = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
            draw = ImageDraw.Draw(page)
            draw.text((100, 100), title, fill="#1e3a5f", font=self.title_font)
            draw.line([(100, 180), (1140, 180)], fill="#1e3a5f", width=4)
            draw.text((100, 240), line, fill="black", font=self.body_font)
            draw.text((1140, 1650), str(number), fill="#5b6472", font=self.body_font, anchor="rs")
            pages.append(page)
        buffer = io.BytesIO()
        pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=150)
        return Media(
            buffer.getvalue(),
            media_type="application/pdf",
            filename=f"{title or 'report'}.pdf",
            disposition="attachment" if download else "inline",
        )
