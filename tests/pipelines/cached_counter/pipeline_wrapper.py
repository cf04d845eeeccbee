"""A cached pipeline that takes its time: for the cache's single-flight tests on real servers.
Each run is one line in the file named by DUALSERVE_TEST_CACHE_LOG, if set."""

import os
import time

from dualserve import BasePipelineWrapper, cached


class PipelineWrapper(BasePipelineWrapper):
    @cached(ttl=3600)
    def run_api(self, text: str = "hello", seconds: float = 1.0) -> bytes:
        log = os.environ.get("DUALSERVE_TEST_CACHE_LOG")
        if log:
            with open(log, "a") as file:
                file.write(f"cached_counter {text} {os.getpid()}\n")
        time.sleep(seconds)
        return f"{text} {time.time()} {os.urandom(8).hex()}\n".encode() * 100
