"""Turns a provider's base64 answer into binary with Media.from_base64."""

import base64
import io

from PIL import Image

from dualserve import BasePipelineWrapper, Media


class PipelineWrapper(BasePipelineWrapper):
    def run_api(self, data_url: bool = False) -> Media:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 5), "navy").save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        payload = {"artifacts": [{"base64": f"data:image/png;base64,{encoded}" if data_url else encoded}]}
        return Media.from_base64(payload["artifacts"][0]["base64"], filename="provider.png")
