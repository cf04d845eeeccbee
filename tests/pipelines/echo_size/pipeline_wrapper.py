"""Reports what arrived, so a test can check a chunked body got through whole."""

import hashlib

from dualserve import BasePipelineWrapper, UploadFile


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, data: str = "", file: UploadFile | None = None) -> dict[str, object]:
        content = file.read() if file is not None else data.encode()
        return {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
