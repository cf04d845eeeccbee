"""The return protocol and the HTTP rules, core only: no framework involved."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest
from PIL import Image

from dualserve import HTTPError, Media, ResolveError
from dualserve.core.http import content_disposition, render
from dualserve.core.request import Request
from dualserve.core.returns import (
    BytesResult,
    ImageResult,
    JSONResult,
    ManyResult,
    PathResult,
    StreamResult,
    encode,
    resolve,
)
from dualserve.core.sniff import guess_from_bytes, guess_from_name
from dualserve.core.streams import prime_async, prime_sync
from tests.wrappers import DATA, png_bytes


def wav() -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data\0\0\0\0"
    )


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        pytest.param(png_bytes(), "image/png", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\0" * 16, "image/jpeg", id="jpeg"),
        pytest.param(b"GIF89a" + b"\0" * 16, "image/gif", id="gif"),
        pytest.param(b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 16, "image/webp", id="webp"),
        pytest.param(b"%PDF-1.7\n", "application/pdf", id="pdf"),
        pytest.param(b"PK\x03\x04" + b"\0" * 40, "application/zip", id="zip"),
        pytest.param(wav(), "audio/wav", id="wav"),
        pytest.param(b"ID3\x03" + b"\0" * 40, "audio/mpeg", id="mp3"),
        pytest.param(b"hello", None, id="text-unknown"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_sniff(body: bytes, media_type: str | None) -> None:
    assert guess_from_bytes(body) == media_type


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("a.png", "image/png"),
        ("A.JPG", "image/jpeg"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("tone.wav", "audio/wav"),
        ("page.svg", "image/svg+xml"),
        ("no-extension", None),
        ("archive.tar.xyzzy", None),
    ],
)
def test_guess_from_name(name: str, media_type: str | None) -> None:
    assert guess_from_name(name) == media_type


@pytest.mark.parametrize(
    ("value", "kind", "media_type"),
    [
        pytest.param(png_bytes(), BytesResult, "image/png", id="bytes"),
        pytest.param(bytearray(b"%PDF-1.4"), BytesResult, "application/pdf", id="bytearray"),
        pytest.param(memoryview(b"\0\1"), BytesResult, "application/octet-stream", id="memoryview"),
        pytest.param(io.BytesIO(png_bytes()), BytesResult, "image/png", id="bytesio"),
        pytest.param(DATA / "sample.png", PathResult, "image/png", id="path"),
        pytest.param(Image.new("L", (2, 2)), ImageResult, None, id="pil"),
        pytest.param(numpy.zeros((2, 2, 3), numpy.uint8), ImageResult, None, id="numpy"),
        pytest.param([png_bytes(), Image.new("L", (2, 2))], ManyResult, None, id="several"),
        pytest.param([{"a": 1}, b"x"], JSONResult, "application/json", id="list-not-all-media"),
        pytest.param(iter([b"a"]), StreamResult, None, id="iterator"),
        pytest.param({"a": 1}, JSONResult, "application/json", id="dict"),
        pytest.param("some/path.png", JSONResult, "application/json", id="str-is-never-a-path"),
        pytest.param([1, 2], JSONResult, "application/json", id="list"),
        pytest.param(3.5, JSONResult, "application/json", id="number"),
    ],
)
def test_resolve_kinds(value: Any, kind: type, media_type: str | None) -> None:
    result = resolve(value)
    assert type(result) is kind
    assert result.media_type == media_type


def test_declared_type_wins_over_sniffing() -> None:
    assert resolve(png_bytes(), ("application/x-thing",)).media_type == "application/x-thing"


def test_one_declared_image_type_is_the_only_offer() -> None:
    # The only offer, not an explicit format: an Accept for another type is still a 406.
    result = resolve(Image.new("RGBA", (4, 4)), ("image/webp",))
    assert isinstance(result, ImageResult)
    assert (result.format, result.offers) == (None, ("image/webp",))


def test_declared_image_types_narrow_the_offers() -> None:
    result = resolve(Image.new("RGB", (4, 4)), ("image/jpeg", "image/png", "application/x-other"))
    assert isinstance(result, ImageResult)
    assert (result.format, result.offers) == (None, ("image/jpeg", "image/png"))


def encoded(value: Any) -> Image.Image:
    result = resolve(value)
    assert isinstance(result, ImageResult) and result.format is not None
    return Image.open(io.BytesIO(encode(result, result.format).body))


@pytest.mark.parametrize(("format_name", "pil_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "1", "I;16", "I", "F", "CMYK", "PA"])
def test_media_format_handles_every_mode(format_name: str, pil_name: str, mode: str) -> None:
    assert encoded(Media(Image.new(mode, (3, 3)), format=format_name, quality=80)).format == pil_name


def test_jpeg_flattens_alpha_onto_white() -> None:
    assert encoded(Media(Image.new("RGBA", (2, 2), (0, 0, 0, 0)), format="jpeg", quality=100)).getpixel((0, 0)) == (
        255,
        255,
        255,
    )


def test_jpeg_flattens_transparent_palette_onto_white() -> None:
    image = Image.new("P", (2, 2), 0)
    image.info["transparency"] = 0
    assert encoded(Media(image, format="jpeg", quality=100)).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    array = numpy.full((2, 2), 40000, dtype=numpy.uint16)
    assert encoded(Media(Image.fromarray(array), format="jpeg", quality=100)).getpixel((0, 0)) in range(154, 160)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(numpy.zeros((2, 2), numpy.float32), id="float-array"),
        pytest.param(numpy.zeros((2, 2, 2), numpy.uint8), id="two-channels"),
    ],
)
def test_unservable_arrays_are_resolve_errors(value: Any) -> None:
    with pytest.raises(ResolveError):
        resolve(value)


@pytest.mark.parametrize(
    ("media", "message"),
    [
        pytest.param(Media(b"x", delete_after=True), "needs a path", id="delete-after-bytes"),
        pytest.param(Media(b"x", format="png"), "images only", id="format-on-bytes"),
        pytest.param(Media(b"x", headers={"Content-Type": "a/b"}), "cannot set", id="reserved-header"),
        pytest.param(Media(Media(b"x")), "another Media", id="nested"),
    ],
)
def test_media_misuse_is_named(media: Media, message: str) -> None:
    with pytest.raises(ResolveError, match=message):
        resolve(media)


@pytest.mark.parametrize(
    "kwargs",
    [{"disposition": "download"}, {"status_code": 99}, {"max_age": -1}],
)
def test_media_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Media(b"x", **kwargs)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a\r\nb.txt", "a__b.txt"),
        ("../etc/passwd", ".._etc_passwd"),
        ("\x00", "_"),
        ("  ", "download"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a right-to-left override, shown as "invoiceexe.png"
        ("a\u2066b\u2069\u200e.txt", "ab.txt"),  # isolates and marks
        ("line\u2028two\u2029.txt", "linetwo.txt"),
        ("\u202e", "download"),
        ("t" * 5000 + ".pdf", "t" * 116 + ".pdf"),  # a 5,000-character title: cut, extension kept
        ("t" * 5000, "t" * 120),
        ("t" * 200 + ".averyveryverylongextension", ("t" * 200 + ".averyveryverylongextension")[:120]),
    ],
)
def test_media_filenames_are_made_safe(name: str, safe: str) -> None:
    assert Media(b"x", filename=name).filename == safe


def test_media_filename_types_unknown_bytes() -> None:
    assert resolve(Media(b"a,b\n", filename="table.csv")).media_type == "text/csv; charset=utf-8"


def test_unserialisable_object_names_its_type() -> None:
    with pytest.raises(ResolveError, match="object"):
        resolve(object())


def test_missing_path_is_404() -> None:
    with pytest.raises(HTTPError) as info:
        resolve(DATA / "nope.png")
    assert info.value.status_code == 404


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ResolveError, match="regular file"):
        resolve(tmp_path)


def test_text_file_object_is_refused() -> None:
    with pytest.raises(ResolveError, match="binary"):
        resolve(io.StringIO("x"))


@pytest.mark.parametrize(
    ("name", "disposition", "expected"),
    [
        ("index.html", "inline", 'inline; filename="index.html"'),
        ("Vögel.txt", "attachment", "attachment; filename=\"Vogel.txt\"; filename*=UTF-8''V%C3%B6gel.txt"),
        ("测试.png", "inline", "inline; filename=\"__.png\"; filename*=UTF-8''%E6%B5%8B%E8%AF%95.png"),
        ('say "hi".txt', "inline", "inline; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
    ],
)
def test_content_disposition(name: str, disposition: str, expected: str) -> None:
    assert content_disposition(disposition, name) == expected


def test_temp_file_deleted_by_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(png_bytes())
    reply = render(resolve(Media(path, delete_after=True)), Request("GET", {}))
    assert path.exists()
    reply.close()
    assert not path.exists()


def test_head_drops_body_and_closes_stream() -> None:
    closed = []

    def chunks() -> Iterator[bytes]:
        try:
            yield b"never sent"
        finally:
            closed.append(True)

    stream = chunks()
    next(stream)
    result = StreamResult(chunks=stream, media_type="text/plain")
    reply = render(result, Request("HEAD", {}))
    assert reply.body == b""
    reply.close()
    assert closed == [True]


@pytest.mark.parametrize(
    "options", [{"format": "png"}, {"headers": {"Content-Type": "text/plain"}}], ids=["format-on-a-file", "reserved"]
)
def test_a_handed_over_file_that_cannot_be_served_is_deleted(tmp_path: Path, options: dict[str, Any]) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"data")
    with pytest.raises(ResolveError):
        resolve(Media(path, delete_after=True, **options))
    assert not path.exists()


def test_a_handed_over_directory_keeps_the_real_error(tmp_path: Path) -> None:
    with pytest.raises(ResolveError, match="not a regular file"):
        resolve(Media(tmp_path, delete_after=True))
    assert tmp_path.is_dir()


def test_closing_a_primed_stream_before_its_first_chunk_closes_the_wrappers_generator() -> None:
    closed: list[str] = []

    def chunks() -> Iterator[bytes]:
        try:
            yield b"first"
            yield b"second"
        finally:
            closed.append("sync")

    async def achunks() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            yield b"second"
        finally:
            closed.append("async")

    generator = chunks()  # still referenced, as a wrapper's object or a traceback may hold it
    primed = prime_sync(StreamResult(chunks=generator, media_type=None))
    assert isinstance(primed.chunks, Iterator)
    primed.chunks.close()  # type: ignore[attr-defined]  # a HEAD answer: nothing taken, the generator waits after its first chunk
    assert closed == ["sync"]

    async def head_of_async() -> None:
        generator = achunks()
        primed = await prime_async(StreamResult(chunks=generator, media_type=None))
        assert isinstance(primed.chunks, AsyncIterator)
        await primed.chunks.aclose()  # type: ignore[attr-defined]

    asyncio.run(head_of_async())
    assert closed == ["sync", "async"]
