"""Hashes an upload (large ones are spooled to a temp file by the form parser)."""

import hashlib

from dualserve import BasePipelineWrapper, UploadFile


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, file: UploadFile) -> dict[str, object]:
        return {"sha256": hashlib.sha256(file.read()).hexdigest()}
