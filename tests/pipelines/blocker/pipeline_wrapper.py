"""A sync run_api that waits for a signal only another request can give."""

import time
from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, signal: str, timeout: float = 10.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(signal).exists():
                return {"released": True}
            time.sleep(0.01)
        return {"released": False}
