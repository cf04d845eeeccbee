"""Holds a thread for a moment and reports the most runs this process has seen at once."""

import threading
import time

from dualserve import BasePipelineWrapper

_lock = threading.Lock()
_running = 0
_peak = 0


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, hold: float = 0.3) -> dict[str, int]:
        global _running, _peak
        with _lock:
            _running += 1
            _peak = max(_peak, _running)
        time.sleep(hold)
        with _lock:
            _running -= 1
            return {"peak": _peak}
