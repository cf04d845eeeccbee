"""Migrated /files/<name>: a Path; a Literal keeps clients to the files meant to be served."""

import sys
from pathlib import Path
from typing import Literal

from dualserve import BasePipelineWrapper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from drawing import ASSETS


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, name: Literal["logo.png", "readme.txt"]) -> Path:
        return ASSETS / name
