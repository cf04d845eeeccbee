"""A job that takes its time and says how far it is: for crash and multi-process job tests. Each
start of a run is one line in the file named by DUALSERVE_TEST_JOB_LOG, if set."""

import os
import time

import dualserve
from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, seconds: float = 2.0, label: str = "job") -> str:
        log = os.environ.get("DUALSERVE_TEST_JOB_LOG")
        if log:
            with open(log, "a") as file:
                file.write(f"{label} {os.getpid()}\n")
        for step in range(20):
            dualserve.progress(step / 20, f"{label}: step {step + 1} of 20")
            time.sleep(seconds / 20)
        return f"{label} done"
