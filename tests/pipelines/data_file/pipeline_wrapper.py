"""A file with known bytes, to check ranges as servers send them (gunicorn: sendfile)."""

from pathlib import Path

from dualserve import BasePipelineWrapper

DATA = Path(__file__).resolve().parents[2] / "data" / "range.bin"


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Path:
        return DATA
