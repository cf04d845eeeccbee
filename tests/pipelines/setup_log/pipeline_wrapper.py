"""Logs each setup() with its process id, to count setups per worker."""

import os
from pathlib import Path

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        log = os.environ.get("DUALSERVE_TEST_SETUP_LOG")
        if log:
            with Path(log).open("a") as file:
                file.write(f"{os.getpid()}\n")

    def run_api(self) -> dict[str, int]:
        return {"pid": os.getpid()}
