"""Text-to-image with huggingface_hub's InferenceClient: Hayhooks' image_generation example, done right.

It returns the PIL image the client gives back, so no temporary file is ever written (Hayhooks'
version saved each image to a temp file that was never deleted), and it serves the same on
FastAPI and Flask, as PNG, JPEG, WebP or base64 JSON, by negotiation.

Settings, from the environment:
- ``HF_TOKEN``: your Hugging Face token. Without it, calls answer 401 with a JSON explanation.
- ``HF_INFERENCE_ENDPOINT``: a base URL to call instead of Hugging Face's router, such as a
  self-hosted endpoint or a local test server; the request goes to ``{base}/models/{model}``.
- ``HF_INFERENCE_TIMEOUT``: seconds to wait for the provider (default 120).
"""

from __future__ import annotations

import os

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from PIL import Image

from dualserve import BasePipelineWrapper, HTTPError

DEFAULT_MODEL = "black-forest-labs/FLUX.1-schnell"


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.token = os.environ.get("HF_TOKEN") or None
        self.endpoint = os.environ.get("HF_INFERENCE_ENDPOINT", "").rstrip("/") or None
        timeout = float(os.environ.get("HF_INFERENCE_TIMEOUT", "120"))
        self.client = InferenceClient(token=self.token, timeout=timeout)

    def run_api(self, prompt: str, width: int = 512, height: int = 512, model: str = DEFAULT_MODEL) -> Image.Image:
        """Generate an image from a text prompt.

        Args:
            prompt: what the image shows.
            width: width in pixels.
            height: height in pixels.
            model: a text-to-image model on the Hugging Face Hub.
        """
        if self.token is None:
            raise HTTPError(401, "Set HF_TOKEN to a Hugging Face token to generate images.")
        # A URL as model is the client's own way to call a given endpoint.
        target = f"{self.endpoint}/models/{model}" if self.endpoint else model
        try:
            return self.client.text_to_image(prompt, model=target, width=width, height=height)
        except InferenceTimeoutError:
            raise HTTPError(504, "The inference provider did not answer in time.") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 503:
                raise HTTPError(
                    503, "The model is loading or busy; try again shortly.", {"Retry-After": "20"}
                ) from None
            raise HTTPError(502, f"The inference provider answered {status}.") from None
        except httpx2.TransportError as exc:
            raise HTTPError(502, f"The inference provider could not be reached: {type(exc).__name__}.") from None
