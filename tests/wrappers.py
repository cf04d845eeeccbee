"""One small wrapper per return kind, served by every frontend in the conformance tests."""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel

from dualserve import BasePipelineWrapper, HTTPError, Media, UploadFile, produces

DATA = Path(__file__).parent / "data"


def png_bytes(width: int = 8, height: int = 8, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


class Shape(str, Enum):
    square = "square"
    circle = "circle"


class Options(BaseModel):
    scale: float = 1.0
    tags: list[str] = []


class BytesWrapper(BasePipelineWrapper):
    def run_api(self, width: int = 8, height: int = 8) -> bytes:
        """Sniffed PNG bytes.

        Args:
            width: width in pixels.
            height: height in pixels.
        """
        return png_bytes(width, height)


class DeclaredBytesWrapper(BasePipelineWrapper):
    @produces("application/x-custom")
    def run_api(self) -> bytes:
        return b"custom payload"


class UnknownBytesWrapper(BasePipelineWrapper):
    def run_api(self) -> bytes:
        return b"\x00\x01 no magic here"


class ImageWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.color = "blue"

    def run_api(self, prompt: str, width: int = 16, height: int = 16) -> Image.Image:
        return Image.new("RGB", (width, height), self.color)


class JpegImageWrapper(BasePipelineWrapper):
    @produces("image/jpeg")
    def run_api(self) -> Image.Image:
        return Image.new("RGBA", (8, 8), (0, 255, 0, 128))


class ArrayWrapper(BasePipelineWrapper):
    def run_api(self, channels: Literal[1, 3, 4] = 3) -> object:
        import numpy

        shape = (4, 6) if channels == 1 else (4, 6, channels)
        return numpy.full(shape, 200, dtype=numpy.uint8)


class PathWrapper(BasePipelineWrapper):
    def run_api(self, name: Literal["sample.png", "notes.txt", "blob.weird"] = "sample.png") -> Path:
        return DATA / name


class MissingPathWrapper(BasePipelineWrapper):
    def run_api(self) -> Path:
        return DATA / "does-not-exist.png"


class StreamWrapper(BasePipelineWrapper):
    def run_api(self, count: int = 3) -> Iterator[bytes]:
        for index in range(count):
            yield f"chunk-{index};".encode()


class TextStreamWrapper(BasePipelineWrapper):
    def run_api(self, count: int = 3) -> Iterator[str]:
        for index in range(count):
            yield f"line {index}\n"


class AsyncStreamWrapper(BasePipelineWrapper):
    @produces("audio/wav")
    async def run_api(self, count: int = 3) -> AsyncIterator[bytes]:
        for index in range(count):
            await asyncio.sleep(0)
            yield bytes([index]) * 4


class AsyncJSONWrapper(BasePipelineWrapper):
    async def run_api(
        self, shape: Shape, options: Options | None = None, tags: list[str] | None = None
    ) -> dict[str, object]:
        await asyncio.sleep(0)
        return {"shape": shape.value, "options": options, "tags": tags, "text": "é"}


class HayhooksAsyncWrapper(BasePipelineWrapper):
    async def run_api_async(self, question: str) -> str:
        return f"answer to {question}"


class BytesIOWrapper(BasePipelineWrapper):
    def run_api(self) -> io.BytesIO:
        return io.BytesIO(png_bytes(5, 5))


class MediaWrapper(BasePipelineWrapper):
    def run_api(self, name: str = "Vögel.png", attachment: bool = False, max_age: int | None = None) -> Media:
        return Media(
            png_bytes(),
            filename=name,
            disposition="attachment" if attachment else "inline",
            max_age=max_age,
            headers={"X-Generated-By": "dualserve-tests"},
        )


class StatusMediaWrapper(BasePipelineWrapper):
    def run_api(self) -> Media:
        return Media(b'{"queued": true}', media_type="application/json", status_code=202)


class HTTPErrorWrapper(BasePipelineWrapper):
    def run_api(self, status: int = 418) -> None:
        raise HTTPError(status, {"reason": "teapot", "status": status})


class FailingWrapper(BasePipelineWrapper):
    def run_api(self) -> bytes:
        raise RuntimeError("secret internals")


class FailingStreamWrapper(BasePipelineWrapper):
    def run_api(self) -> Iterator[bytes]:
        raise_now = True
        if raise_now:
            raise RuntimeError("before the first chunk")
        yield b""


class UploadWrapper(BasePipelineWrapper):
    def run_api(self, file: UploadFile, label: str = "x") -> dict[str, object]:
        data = file.read()
        return {"filename": file.filename, "content_type": file.content_type, "size": len(data), "label": label}


RANGE_DATA = (DATA / "range.bin").read_bytes()


class RangeBytesWrapper(BasePipelineWrapper):
    @produces("application/octet-stream")
    def run_api(self) -> bytes:
        return RANGE_DATA


class WrittenFileWrapper(BasePipelineWrapper):
    """Writes its result file in each run, outside the temp directory (as ``out.png`` overwritten
    in a project folder): a file, but not a stored one; the next run may write other bytes."""

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dualserve-written-"))

    def run_api(self) -> Path:
        path = self.folder / "out.bin"
        path.write_bytes(os.urandom(3000))
        return path


class RangePathWrapper(BasePipelineWrapper):
    def run_api(self) -> Path:
        return DATA / "range.bin"


class RangeImageWrapper(BasePipelineWrapper):
    def run_api(self) -> Image.Image:
        return Image.linear_gradient("L").resize((64, 64))


class TempFileWrapper(BasePipelineWrapper):
    """Writes a file per call and asks for it to be deleted once the response is over."""

    def run_api(self, directory: str, name: str = "out.bin") -> Media:
        path = Path(directory) / name
        path.write_bytes(RANGE_DATA)
        return Media(path, media_type="application/octet-stream", delete_after=True)


class SeveralWrapper(BasePipelineWrapper):
    def run_api(self, count: int = 3) -> list[object]:
        items: list[object] = [
            Image.new("RGB", (4, 3), "red"),
            png_bytes(2, 2),
            Media(b"plain words", filename="notes.txt"),
        ]
        return items[:count]


class WebpMediaWrapper(BasePipelineWrapper):
    def run_api(self) -> Media:
        return Media(Image.new("RGB", (5, 5), "green"), format="webp", quality=50)


class OwnFormatWrapper(BasePipelineWrapper):
    """Has its own ``format`` parameter: negotiation must leave it alone."""

    def run_api(self, format: str = "none") -> Image.Image:
        return Image.new("L", (len(format), 1))


class LoopBoundWrapper(BasePipelineWrapper):
    """Binds a lock to "the" loop in async setup(); async run_api and generators must share it."""

    async def setup(self) -> None:
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    async def run_api(self) -> dict[str, bool]:
        async with self.lock:
            return {"same_loop": asyncio.get_running_loop() is self.loop}


class LoopBoundStreamWrapper(BasePipelineWrapper):
    async def setup(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def run_api(self) -> AsyncIterator[bytes]:
        yield b"same" if asyncio.get_running_loop() is self.loop else b"different"


class BadHeaderWrapper(BasePipelineWrapper):
    def run_api(self, kind: str) -> Media:
        choices: dict[str, dict[str, Any]] = {"snowman": {"X-Note": "snow\u2603"}, "number": {"X-Count": 5}}
        headers = choices.get(kind, {})
        if kind == "detail":
            raise HTTPError(400, object())
        if kind == "error-header":
            raise HTTPError(429, "slow down", headers={"Retry-After": "5"})
        return Media(b"x", headers=headers)


class BadFirstChunkWrapper(BasePipelineWrapper):
    def run_api(self) -> Iterator[object]:
        yield {"not": "bytes"}


HEAD_CLOSES: list[bool] = []


class HeadStreamWrapper(BasePipelineWrapper):
    """Records, when closed, whether that happened on an event loop (it must not)."""

    def run_api(self) -> Iterator[bytes]:
        try:
            yield b"first"
            yield b"second"
        finally:
            try:
                asyncio.get_running_loop()
                HEAD_CLOSES.append(True)
            except RuntimeError:
                HEAD_CLOSES.append(False)


class SafeFileWrapper(BasePipelineWrapper):
    def run_api(self, name: str) -> Media:
        return Media(name, root=DATA)


class ActiveContentWrapper(BasePipelineWrapper):
    def run_api(self, kind: str = "svg", download: bool = False) -> Media:
        body = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        media_type = {"svg": "image/svg+xml", "html": "text/html; charset=utf-8"}[kind]
        return Media(
            body, media_type=media_type, filename=f"x.{kind}", disposition="attachment" if download else "inline"
        )


class SlowWrapper(BasePipelineWrapper):
    """Waits for a release file, then writes a temp file to be deleted after the response."""

    def run_api(self, directory: str) -> Media:
        import time

        deadline = time.monotonic() + 10
        while not (Path(directory) / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        path = Path(directory) / "late.bin"
        path.write_bytes(b"late")
        (Path(directory) / "written").write_text("yes")  # stays: shows the late answer exists
        return Media(path, delete_after=True)


class NoneWrapper(BasePipelineWrapper):
    def run_api(self) -> None:
        return None


WRAPPERS = {
    "bytes": BytesWrapper,
    "declared_bytes": DeclaredBytesWrapper,
    "unknown_bytes": UnknownBytesWrapper,
    "image": ImageWrapper,
    "jpeg_image": JpegImageWrapper,
    "array": ArrayWrapper,
    "path": PathWrapper,
    "missing_path": MissingPathWrapper,
    "stream": StreamWrapper,
    "text_stream": TextStreamWrapper,
    "async_stream": AsyncStreamWrapper,
    "async_json": AsyncJSONWrapper,
    "hayhooks_async": HayhooksAsyncWrapper,
    "bytesio": BytesIOWrapper,
    "media": MediaWrapper,
    "status_media": StatusMediaWrapper,
    "http_error": HTTPErrorWrapper,
    "failing": FailingWrapper,
    "failing_stream": FailingStreamWrapper,
    "upload": UploadWrapper,
    "none": NoneWrapper,
    "slow": SlowWrapper,
    "safe_file": SafeFileWrapper,
    "active": ActiveContentWrapper,
    "loop_bound": LoopBoundWrapper,
    "loop_bound_stream": LoopBoundStreamWrapper,
    "bad_header": BadHeaderWrapper,
    "bad_first_chunk": BadFirstChunkWrapper,
    "head_stream": HeadStreamWrapper,
    "several": SeveralWrapper,
    "webp_media": WebpMediaWrapper,
    "own_format": OwnFormatWrapper,
    "range_bytes": RangeBytesWrapper,
    "range_path": RangePathWrapper,
    "written_file": WrittenFileWrapper,
    "range_image": RangeImageWrapper,
    "temp_file": TempFileWrapper,
}


def make_wrappers() -> dict[str, BasePipelineWrapper]:
    return {name: cls() for name, cls in WRAPPERS.items()}
