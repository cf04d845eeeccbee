"""Leaves a marker when it runs, to show a request was (or was not) run."""

from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, marker: str = "", note: str = "x") -> dict[str, str]:
        if marker:
            Path(marker).write_text(note)
        return {"ran": note}
