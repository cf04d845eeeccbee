"""An uncached pipeline whose every answer differs: cached only by ``--cache-ttl``. Each run is
one line in the file named by DUALSERVE_TEST_CACHE_LOG, if set."""

import os

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, text: str = "hello") -> str:
        log = os.environ.get("DUALSERVE_TEST_CACHE_LOG")
        if log:
            with open(log, "a") as file:
                file.write(f"counter {text} {os.getpid()}\n")
        return f"{text} {os.urandom(8).hex()}"
