"""Answers as a Stability-style provider does: base64 inside JSON."""

import base64
import io

from PIL import Image

from dualserve import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self) -> dict[str, object]:
        buffer = io.BytesIO()
        Image.new("RGB", (9, 9), "teal").save(buffer, format="PNG")
        return {"artifacts": [{"base64": base64.b64encode(buffer.getvalue()).decode(), "finishReason": "SUCCESS"}]}
