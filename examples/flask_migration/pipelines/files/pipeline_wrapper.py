"""Migrated /files/<name>: a Path, and the legacy app's 404 for any other name.

A ``Literal["logo.png", "readme.txt"]`` parameter would say the same with less code, but as a 422
(``loc: ["path", "name"]``): a client that checks for the legacy 404 would break, and
``dualserve parity`` reports it as breaking (status 404 != 422).
"""

import sys
from pathlib import Path

from dualserve import BasePipelineWrapper, HTTPError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from drawing import ASSETS, SERVED_FILES


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, name: str) -> Path:
        if name not in SERVED_FILES:
            raise HTTPError(404, "Not Found")
        return ASSETS / name
