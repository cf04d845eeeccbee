"""An async run_api that gives the blocker its signal: it can only run if the loop is free."""

from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    async def run_api(self, signal: str) -> dict[str, object]:
        Path(signal).write_text("go")
        return {"sent": True}
