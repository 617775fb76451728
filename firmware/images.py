"""Uploaded enrolment images: size read from the header and checked *before* decoding, then decoded to RGB.

One job: bound what an image costs the board.  A 420 KB PNG can declare 12000 x 12000 pixels (432 MB as RGB);
decoding it first and checking after is too late on a 512 MB board.  So:

* ``header_size(data) -> (format, width, height)`` reads the dimensions from the PNG ``IHDR`` chunk or the first
  JPEG start-of-frame marker (SOF0..SOF15, baseline, progressive, lossless, arithmetic) without decoding;
  anything else (BMP, TIFF, WebP, ...) is refused: the protocol carries PNG or JPEG (``docs/PROTOCOL.md``).
* ``decode_image(item, max_pixels, index)`` refuses an image whose width x height exceeds ``max_pixels`` (the
  board's ``enrolment.max_image_pixels``) with ``ImageError("image_too_large")``, decodes the rest with OpenCV
  and checks that the decoded size is the header's.  A uint8 (H, W, 3) RGB array (already decoded by the host)
  is checked against the same budget.

Errors are ``ImageError`` (``errors.py``) with reason ``bad_image`` or ``image_too_large``; the message names the
image (its index in the request), its format and size, and the limit.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .errors import ImageError

#: the default pixel budget of one uploaded image (width x height): 2048 x 2048, 12 MiB as RGB; a board file's
#: ``[enrolment] max_image_pixels`` overrides it (see boards/*.toml)
DEFAULT_MAX_IMAGE_PIXELS = 2048 * 2048

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
#: JPEG start-of-frame markers (ITU T.81 table B.1): C0-C3, C5-C7, C9-CB, CD-CF (C4 DHT, C8 JPG, CC DAC are not)
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: markers without a length field: TEM, RST0-7, SOI
JPEG_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])


def _png_size(data: bytes, where: str) -> tuple[int, int]:
    # signature (8) | length (4) | "IHDR" (4) | width (4, big-endian) | height (4) | ...
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("bad_image", f"{where}: PNG without an IHDR chunk where it must be ({len(data)} bytes)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes, where: str) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError("bad_image", f"{where}: JPEG marker expected at byte {i}, found 0x{data[i]:02x}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            raise ImageError("bad_image", f"{where}: JPEG segment 0x{marker:02x} at byte {i} has length {length}")
        if marker in JPEG_SOF_MARKERS:
            if i + 9 > n or length < 7:
                raise ImageError("bad_image", f"{where}: JPEG frame header at byte {i} is cut short")
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            if height == 0:
                raise ImageError("bad_image", f"{where}: JPEG with its height deferred to a DNL marker (unsupported)")
            return width, height
        i += 2 + length
    raise ImageError("bad_image", f"{where}: JPEG without a frame header (SOF marker) in its {n} bytes")


def header_size(data: bytes, where: str = "image") -> tuple[str, int, int]:
    """``("png" | "jpeg", width, height)`` from an encoded image's header, without decoding it.

    ``ImageError("bad_image")`` for another format or a header that is cut short or malformed."""
    data = bytes(data[:1 << 20]) if len(data) > 1 << 20 else bytes(data)  # headers sit near the start
    if data.startswith(PNG_SIGNATURE):
        return ("png", *_png_size(data, where))
    if data.startswith(JPEG_SOI):
        return ("jpeg", *_jpeg_size(data, where))
    raise ImageError("bad_image", f"{where}: {len(data)} bytes starting {data[:8].hex() or 'with nothing'} are "
                                  f"neither PNG nor JPEG (the formats the protocol carries)")


def check_pixels(width: int, height: int, max_pixels: int, where: str) -> None:
    """``ImageError("image_too_large")`` if ``width`` x ``height`` exceeds ``max_pixels`` (or is empty)."""
    if width <= 0 or height <= 0:
        raise ImageError("bad_image", f"{where}: {width}x{height} pixels (empty)")
    if width * height > max_pixels:
        raise ImageError("image_too_large", f"{where}: {width}x{height} = {width * height:,} pixels exceeds this "
                                            f"board's limit of {max_pixels:,} (enrolment.max_image_pixels); "
                                            f"send it smaller (the host tools send at most 1024 px a side)")


def decode_image(item: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, index: int = 0) -> np.ndarray:
    """An uploaded image -> uint8 (H, W, 3) RGB.  ``item``: encoded PNG/JPEG bytes, or a uint8 (H, W, 3) RGB
    array.  The size is checked against ``max_pixels`` (width x height) before any decoding."""
    where = f"image {index}"
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ImageError("bad_image", f"{where}: expected a uint8 (H, W, 3) RGB array, found "
                                          f"{item.dtype} {list(item.shape)}")
        check_pixels(item.shape[1], item.shape[0], max_pixels, where)
        return item
    if not isinstance(item, (bytes, bytearray)):
        raise ImageError("bad_image", f"{where}: expected encoded PNG/JPEG bytes or an array, "
                                      f"found {type(item).__name__}")
    fmt, width, height = header_size(item, where)
    check_pixels(width, height, max_pixels, f"{where} ({fmt})")
    import cv2

    try:
        bgr = cv2.imdecode(np.frombuffer(bytes(item), np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError("bad_image", f"{where} ({fmt}, {width}x{height}): OpenCV cannot decode it "
                                      f"({str(exc).strip().splitlines()[-1]})") from None
    if bgr is None:
        raise ImageError("bad_image", f"{where} ({fmt}, {width}x{height}): {len(item)} bytes that OpenCV "
                                      f"cannot decode")
    if bgr.shape[:2] != (height, width):
        raise ImageError("bad_image", f"{where} ({fmt}): decoded as {bgr.shape[1]}x{bgr.shape[0]}, its header says "
                                      f"{width}x{height}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
