"""Migrated /health: a dict; served with json="flask", its bytes are jsonify's, newline included."""

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> dict[str, bool]:
        return {"ok": True}
