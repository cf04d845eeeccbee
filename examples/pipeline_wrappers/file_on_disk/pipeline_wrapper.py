"""Return a file on disk: sent with Content-Length, Last-Modified, ETag and a filename."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dualserve import BasePipelineWrapper, Media

ASSETS = Path(__file__).parent / "assets"


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, name: Literal["logo.png", "readme.txt"] = "logo.png", download: bool = False) -> Media:
        """Serve one of the files beside this wrapper.

        Args:
            name: which file; a Literal, so a client can never name another path.
            download: send it as an attachment instead of inline.
        """
        return Media(ASSETS / name, disposition="attachment" if download else "inline")
