"""Call pipelines over HTTP and get one kind of result, whatever the server answered.

Built on httpx2 (the maintained successor of httpx that Starlette's test client and
huggingface_hub use). The producer/consumer format mismatch disappears: a binary body, a
base64 JSON document (``{"media_type", "data"}``, ``{"count", "items"}``, or a provider's
``{"artifacts": [{"base64": ...}]}``), a zip of several items, or a stream all come back as
:class:`Result` objects with ``.content``, ``.media_type``, ``.filename``, ``.save()`` and
``.image()``.

    with Client("http://127.0.0.1:1416") as client:
        client.run("pillow_image", prompt="a cat").save("cat.png")
        client.download("byte_stream", "tone.wav", seconds=30)   # streamed to disk, progress on a tty
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import mimetypes
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx2

__all__ = ["AsyncClient", "Client", "Result", "ServerError"]

DEFAULT_URL = "http://127.0.0.1:1416"
CHUNK = 1024 * 1024


class ServerError(Exception):
    """The server answered with an error status; ``detail`` is its JSON ``detail`` when it sent one."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass
class Result:
    """One media result: bytes with a type and, when the server named it, a file name."""

    content: bytes
    media_type: str
    filename: str | None = None
    #: Every item of a several-item answer (a zip, ``{"count", "items"}``, several artifacts);
    #: ``content`` is then the first item's. A single result lists itself.
    items: list[Result] = field(default_factory=list)
    #: The decoded JSON, when the server answered data rather than media.
    data: Any = None

    def __post_init__(self) -> None:
        if not self.items:
            self.items = [self]

    def save(self, path: str | Path) -> Path:
        """Write the content to ``path`` (a folder gets the server's file name) and return the path."""
        target = Path(path)
        if target.is_dir():
            target = target / (self.filename or f"result{_extension(self.media_type)}")
        target.write_bytes(self.content)
        return target

    def save_all(self, folder: str | Path) -> list[Path]:
        """Write every item into ``folder`` under its own name (``item_0.png`` when it has none).

        Two items of the same name never overwrite each other: the later one gets its index.
        """
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for index, item in enumerate(self.items):
            name = item.filename or f"item_{index}{_extension(item.media_type)}"
            if target / name in paths:
                name = f"{Path(name).stem}_{index}{Path(name).suffix}"
            paths.append(item.save(target / name))
        return paths

    def image(self) -> Any:
        """The content as a ``PIL.Image.Image``."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.content))
        image.load()
        return image

    def json(self) -> Any:
        return self.data if self.data is not None else json.loads(self.content)


def interpret(status_code: int, headers: httpx2.Headers, content: bytes) -> Result:
    """Turn any answer into a :class:`Result`; raise :class:`ServerError` for an error status."""
    media_type = headers.get("content-type", "application/octet-stream")
    if status_code >= 400:
        detail: Any = content.decode("utf-8", "replace")
        if media_type.startswith("application/json"):
            try:
                detail = json.loads(content).get("detail", detail)
            except (ValueError, AttributeError):
                pass
        raise ServerError(status_code, detail)
    filename = _filename(headers.get("content-disposition"))
    base = media_type.split(";", 1)[0].strip()
    if base == "application/zip":
        return _from_zip(content)
    if base == "application/json":
        return _from_json(json.loads(content), content)
    return Result(content, media_type, filename)


def _from_json(document: Any, raw: bytes) -> Result:
    # Media only when the whole document has one of the known shapes and its base64 decodes;
    # anything else, such as a pipeline's own {"count": 2, "items": ["a", "b"]}, is data.
    try:
        if isinstance(document, dict):
            if isinstance(document.get("data"), str) and isinstance(document.get("media_type"), str):
                return _decoded(document["data"], document["media_type"])
            items = document.get("items")
            if "count" in document and isinstance(items, list) and items and all(map(_is_item, items)):
                return _several([_decoded(item["data"], item.get("media_type")) for item in items])
            artifacts = document.get("artifacts")
            if isinstance(artifacts, list) and artifacts and all(_is_artifact(item) for item in artifacts):
                return _several([_decoded(item["base64"], None) for item in artifacts])
    except binascii.Error:
        pass
    return Result(raw, "application/json", data=document)


def _is_item(item: Any) -> bool:
    return (
        isinstance(item, dict) and isinstance(item.get("data"), str) and isinstance(item.get("media_type"), str | None)
    )


def _is_artifact(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("base64"), str)


def _decoded(data: str, media_type: str | None) -> Result:
    content = base64.b64decode(data)
    if media_type is None:
        from .core.sniff import OCTET_STREAM, guess_from_bytes

        media_type = guess_from_bytes(content) or OCTET_STREAM
    return Result(content, media_type)


def _several(items: list[Result]) -> Result:
    if len(items) == 1:
        return items[0]
    first = items[0] if items else Result(b"", "application/octet-stream")
    return Result(first.content, first.media_type, first.filename, items=items or [first])


def _from_zip(content: bytes) -> Result:
    from .core.sniff import OCTET_STREAM, guess_from_name

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        items = [
            Result(archive.read(entry), guess_from_name(entry.filename) or OCTET_STREAM, _safe_name(entry.filename))
            for entry in entries
        ]
    return _several(items)


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    message = Message()
    message["content-disposition"] = disposition
    return _safe_name(message.get_filename())


def _safe_name(name: str | None) -> str | None:
    """The last part of ``name``: never a path, whatever the server says, nor ``.`` or ``..``."""
    base = Path(name.replace("\\", "/")).name if name else ""
    return base if base not in ("", ".", "..") else None


def _run_path(name: str) -> str:
    # Relative to the base URL, which keeps its /flask or /fastapi prefix; the name is one segment.
    return f"{quote(name, safe='')}/run"


def _extension(media_type: str) -> str:
    return mimetypes.guess_extension(media_type.split(";", 1)[0].strip()) or ".bin"


class _Progress:
    """A progress bar on stderr when it is a terminal (tqdm), silence otherwise."""

    def __init__(self, total: int | None, label: str, enabled: bool | None) -> None:
        self.bar: Any = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _request_options(params: dict[str, Any], accept: str | None) -> dict[str, Any]:
    return {"json": params, "headers": {"accept": accept} if accept else {}}


class Client:
    """A synchronous client for a dualserve server (or any service that answers media).

    :param url: the server, with the frontend's prefix if any (``http://host:1416/flask``).
    :param timeout: seconds; generating an image can take a while.
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, **options: Any) -> None:
        self.http = httpx2.Client(base_url=url.rstrip("/") + "/", timeout=timeout, **options)

    def run(self, name: str, accept: str | None = None, **params: Any) -> Result:
        """POST ``params`` as JSON to ``/{name}/run`` and interpret the answer.

        Errors: :class:`ServerError` for an error status; ``httpx2.TransportError`` (``ConnectError``,
        ``TimeoutException``, ...) when no answer came; ``ValueError`` or ``zipfile.BadZipFile`` when
        the answer says JSON or zip and is not.
        """
        response = self.http.post(_run_path(name), **_request_options(params, accept))
        return interpret(response.status_code, response.headers, response.content)

    @contextmanager
    def stream(self, name: str, accept: str | None = None, **params: Any) -> Iterator[httpx2.Response]:
        """POST ``params`` as JSON to ``/{name}/run`` and yield the response, its body not read yet.

        An error status raises :class:`ServerError` (its body read for the detail) before anything is yielded.
        """
        with self.http.stream("POST", _run_path(name), **_request_options(params, accept)) as response:
            if response.status_code >= 400:
                response.read()
                interpret(response.status_code, response.headers, response.content)
            yield response

    def download(
        self, name: str, path: str | Path, accept: str | None = None, progress: bool | None = None, **params: Any
    ) -> Path:
        """Stream the answer to ``path`` without holding it in memory; a progress bar shows on a tty."""
        target = Path(path)
        with self.stream(name, accept, **params) as response:
            if target.is_dir():
                target = target / (_filename(response.headers.get("content-disposition")) or f"{name}.bin")
            with target.open("wb") as file:
                _copy(response.iter_bytes(CHUNK), file, response.headers, str(target.name), progress)
        return target

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _copy(chunks: Iterator[bytes], file: IO[bytes], headers: httpx2.Headers, label: str, progress: bool | None) -> None:
    length = headers.get("content-length")
    bar = _Progress(int(length) if length and length.isdigit() else None, label, progress)
    try:
        for chunk in chunks:
            file.write(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()


class AsyncClient:
    """The asynchronous twin of :class:`Client`, for use inside an event loop."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, **options: Any) -> None:
        self.http = httpx2.AsyncClient(base_url=url.rstrip("/") + "/", timeout=timeout, **options)

    async def run(self, name: str, accept: str | None = None, **params: Any) -> Result:
        response = await self.http.post(_run_path(name), **_request_options(params, accept))
        return interpret(response.status_code, response.headers, response.content)

    @asynccontextmanager
    async def stream(self, name: str, accept: str | None = None, **params: Any) -> AsyncIterator[httpx2.Response]:
        """As :meth:`Client.stream`: the response, its body not read yet; an error status raises."""
        async with self.http.stream("POST", _run_path(name), **_request_options(params, accept)) as response:
            if response.status_code >= 400:
                await response.aread()
                interpret(response.status_code, response.headers, response.content)
            yield response

    async def download(
        self, name: str, path: str | Path, accept: str | None = None, progress: bool | None = None, **params: Any
    ) -> Path:
        target = Path(path)
        async with self.stream(name, accept, **params) as response:
            if target.is_dir():
                target = target / (_filename(response.headers.get("content-disposition")) or f"{name}.bin")
            length = response.headers.get("content-length")
            bar = _Progress(int(length) if length and length.isdigit() else None, target.name, progress)
            try:
                with target.open("wb") as file:
                    async for chunk in response.aiter_bytes(CHUNK):
                        file.write(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
        return target

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
