"""Stream WAV audio as it is generated: each chunk reaches the client while later ones are computed."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

from dualserve import BasePipelineWrapper, produces

RATE = 16_000


class PipelineWrapper(BasePipelineWrapper):
    @produces("audio/wav")
    def run_api(self, frequency: float = 440.0, seconds: float = 2.0) -> Iterator[bytes]:
        """A sine tone, 16-bit mono at 16 kHz, sent a tenth of a second at a time.

        Args:
            frequency: pitch in Hz, 20 to 8000.
            seconds: duration, up to 60.
        """
        frequency = max(20.0, min(8000.0, frequency))
        frames = int(RATE * max(0.0, min(60.0, seconds)))
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
