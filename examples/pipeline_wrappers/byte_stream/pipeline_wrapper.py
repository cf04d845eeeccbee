"""Stream WAV audio as it is generated: each chunk reaches the client while later ones are computed."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from dualserve import BasePipelineWrapper, produces

RATE = 16_000
# Every second is computed and sent: outside these bounds (or NaN, or infinity), a 422.
Frequency = Annotated[float, Field(ge=20, le=8000)]
Seconds = Annotated[float, Field(ge=0, le=60)]


class PipelineWrapper(BasePipelineWrapper):
    @produces("audio/wav")
    def run_api(self, frequency: Frequency = 440.0, seconds: Seconds = 2.0) -> Iterator[bytes]:
        """A sine tone, 16-bit mono at 16 kHz, sent a tenth of a second at a time.

        Args:
            frequency: pitch in Hz, 20 to 8000.
            seconds: duration, 0 to 60.
        """
        frames = int(RATE * seconds)
        yield _wav_header(frames)
        step = RATE // 10
        for start in range(0, frames, step):
            count = min(step, frames - start)
            samples = (int(12000 * math.sin(2 * math.pi * frequency * (start + i) / RATE)) for i in range(count))
            yield struct.pack(f"<{count}h", *samples)


def _wav_header(frames: int) -> bytes:
    data_size = frames * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )
