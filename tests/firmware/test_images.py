"""Uploaded images: width x height from the PNG/JPEG header, refused over the board's budget before decoding."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from wearface.firmware import images
from wearface.firmware.errors import ImageError


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring width x height, and no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (images.PNG_SIGNATURE + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("size", [(1, 1), (37, 5), (640, 480)])
def test_header_size_is_the_decoded_size(ext, size):
    w, h = size
    ok, data = cv2.imencode(ext, np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert ok
    fmt, width, height = images.header_size(data.tobytes())
    assert (fmt, width, height) == ("png" if ext == ".png" else "jpeg", w, h)
    rgb = images.decode_image(data.tobytes(), max_pixels=w * h)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8


def test_progressive_jpeg_header_is_read():
    ok, data = cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert images.header_size(data.tobytes()) == ("jpeg", 70, 30)


def test_too_many_pixels_are_refused_without_decoding(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("decoded an image whose header was over the limit")
    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(ImageError) as err:
        images.decode_image(png_header_only(12000, 12000), max_pixels=4_194_304, index=2)
    assert err.value.reason == "image_too_large"
    assert "image 2" in str(err.value) and "12000x12000" in str(err.value) and "4,194,304" in str(err.value)
    with pytest.raises(ImageError, match="image_too_large|exceeds"):
        images.decode_image(np.zeros((100, 101, 3), np.uint8), max_pixels=100 * 100)


@pytest.mark.parametrize("data, words", [
    (b"", "neither PNG nor JPEG"),
    (b"GIF89a\x01\x00\x01\x00", "neither PNG nor JPEG"),
    (b"BM" + bytes(60), "neither PNG nor JPEG"),
    (images.PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR", "IHDR"),
    (b"\xff\xd8\xff\xd9", "frame header"),
    (b"\xff\xd8\x00\x00\x00\x00", "marker expected"),
    (b"\xff\xd8\xff\xe0\x00\x01", "length 1"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03", "DNL"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00", "frame header"),
])
def test_unreadable_headers_are_bad_images(data, words):
    with pytest.raises(ImageError) as err:
        images.decode_image(data)
    assert err.value.reason == "bad_image" and words in str(err.value)


def test_a_header_that_lies_about_the_size_is_refused():
    ok, data = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
    raw = bytearray(data.tobytes())
    raw[16:24] = struct.pack(">II", 10, 10)  # IHDR says 10x10 (its CRC no longer matches: OpenCV refuses)
    with pytest.raises(ImageError) as err:
        images.decode_image(bytes(raw))
    assert err.value.reason == "bad_image"
