"""Text-to-image with huggingface_hub's InferenceClient: Hayhooks' image_generation example, done right.

It returns the PIL image the client gives back, so no temporary file is ever written (Hayhooks'
version saved each image to a temp file that was never deleted), and it serves the same on
FastAPI and Flask, as PNG, JPEG, WebP or base64 JSON, by negotiation.

Settings, from the environment:
- ``HF_TOKEN``: your Hugging Face token. Without it, calls answer 401 with a JSON explanation.
- ``HF_INFERENCE_ENDPOINT``: a base URL to call instead of Hugging Face's router, such as a
  self-hosted endpoint or a local test server; the request goes to ``{base}/models/{model}``.
- ``HF_INFERENCE_TIMEOUT``: seconds to wait for the provider (default 120).

Where requests go is the server's setting alone. ``model`` is a Hub id, never a URL: the
InferenceClient calls a URL given as model, with this server's token in ``Authorization``, and
hands back what it answers, so a client-chosen URL would be a server-side request forgery.
"""

from __future__ import annotations

import os
from typing import Annotated

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from PIL import Image
from pydantic import Field

from dualserve import BasePipelineWrapper, HTTPError

DEFAULT_MODEL = "black-forest-labs/FLUX.1-schnell"

# A Hub id, "owner/name": in each part, runs of letters, digits and "_" joined by single "-" or "."
# (no "..", no leading or trailing "-" or "."), as the Hub names repositories; 193 characters at
# most (the Hub allows 96 a part). No scheme, ":", "%", "?", "#" or second "/": it can neither be a
# URL nor leave {HF_INFERENCE_ENDPOINT}/models/. Anything else is a 422 before any call is made.
_PART = r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*"
HubModelId = Annotated[str, Field(pattern=rf"^{_PART}/{_PART}$", max_length=2 * 96 + 1)]
Prompt = Annotated[str, Field(max_length=2000)]
Side = Annotated[int, Field(ge=64, le=2048)]


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.token = os.environ.get("HF_TOKEN") or None
        self.endpoint = os.environ.get("HF_INFERENCE_ENDPOINT", "").rstrip("/") or None
        timeout = float(os.environ.get("HF_INFERENCE_TIMEOUT", "120"))
        self.client = InferenceClient(token=self.token, timeout=timeout)

    def run_api(
        self, prompt: Prompt, width: Side = 512, height: Side = 512, model: HubModelId = DEFAULT_MODEL
    ) -> Image.Image:
        """Generate an image from a text prompt.

        Args:
            prompt: what the image shows, up to 2000 characters.
            width: width in pixels, 64 to 2048.
            height: height in pixels, 64 to 2048.
            model: a text-to-image model's id on the Hugging Face Hub, "owner/name"; never a URL.
        """
        if self.token is None:
            raise HTTPError(401, "Set HF_TOKEN to a Hugging Face token to generate images.")
        # The endpoint is the server's setting; model, already a valid HubModelId, only names a model.
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
