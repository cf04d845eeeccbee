"""Migrated /report: bytes with a non-ASCII download name, as Media."""

import sys
from pathlib import Path

from dualserve import BasePipelineWrapper, Media

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from drawing import REPORT_NAME, report_csv


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> Media:
        return Media(report_csv(), media_type="text/csv; charset=utf-8", filename=REPORT_NAME, disposition="attachment")
