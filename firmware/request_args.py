"""The arguments of every request: type, range and size, checked before the app sees them.

One job: turn a request's payload (the decoded JSON object, with ``bytes`` and arrays from the blob) into the
handler's arguments, or raise ``RequestError(BAD_REQUEST)`` naming the argument, what was expected and what
was found.  Never another exception, whatever the payload: JSON numbers such as ``1e99999`` (infinity in
Python) or ``5.0`` are not integers, ``"false"`` is not a boolean.  Keys a request does not list are ignored
(a newer host may send more).

    args = parse_arguments(opcode, payload)      # {name: checked value}, defaults filled in

(Named ``request_args``, not ``requests``, so that it is never mistaken for the HTTP library.)

``ARGUMENTS`` is the table (``docs/PROTOCOL.md`` lists the same limits); content checks that need the board
(a person's name, an image's pixels) happen after this, in ``gallery.check_name`` and ``images.decode_image``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import protocol as P
from .errors import RequestError

#: flash sizes and offsets are checked against the board's slot size by the slot store; here only their range
MAX_FLASH_BYTES = 0xFFFF_FFFF
#: LOG_TAIL answers at most this many lines
MAX_LOG_TAIL_LINES = 1000
#: ENROLL_IMAGES takes at most this many images in one request
MAX_ENROLL_IMAGES = 32
#: ENROLL_CAMERA's n_frames range
ENROLL_CAMERA_FRAMES = (1, 100)
#: a name argument longer than this (in characters, before normalisation) is refused here; the gallery's own
#: limit on the normalised name (``gallery.MAX_NAME_CHARS``) is smaller
MAX_NAME_ARGUMENT_CHARS = 256

_REQUIRED = object()


def _found(value: Any) -> str:
    """What a wrong value is, for messages: its JSON-ish type and a short repr."""
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", bytes: "bytes", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)
    if isinstance(value, (bytes, list, np.ndarray)):
        return f"{kind} of {len(value)}"
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _bad(key: str, expected: str, value: Any) -> RequestError:
    return RequestError(P.Status.BAD_REQUEST, f"argument {key!r}: expected {expected}, found {_found(value)}",
                        argument=key)


@dataclass(frozen=True)
class Int:
    """An integer (JSON number without fraction or exponent; never a boolean) in ``lo..hi``."""

    lo: int
    hi: int
    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> int:
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise _bad(key, f"an integer in {self.lo}..{self.hi}", value)
        return value


@dataclass(frozen=True)
class Bool:
    """``true`` or ``false`` (not 0/1, not a string)."""

    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> bool:
        if type(value) is not bool:
            raise _bad(key, "true or false", value)
        return value


@dataclass(frozen=True)
class Text:
    """A string of at most ``max_chars`` characters."""

    max_chars: int
    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_chars:
            raise _bad(key, f"a string of at most {self.max_chars} characters", value)
        return value


@dataclass(frozen=True)
class Blob:
    """Binary data (``bytes`` in the blob) of ``min_bytes..max_bytes``."""

    min_bytes: int
    max_bytes: int
    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> bytes:
        if not isinstance(value, bytes) or not self.min_bytes <= len(value) <= self.max_bytes:
            raise _bad(key, f"binary data of {self.min_bytes}..{self.max_bytes} bytes", value)
        return value


@dataclass(frozen=True)
class Sha256:
    """A SHA-256 digest: 32 bytes, or 64 hex digits."""

    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> bytes:
        if isinstance(value, str) and len(value) == 64:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        if isinstance(value, bytes) and len(value) == 32:
            return value
        raise _bad(key, "a SHA-256 digest (32 bytes or 64 hex digits)", value)


@dataclass(frozen=True)
class Images:
    """A list of ``1..max_items`` images, each encoded bytes or a uint8 array (their pixels are checked later,
    from the header, by ``images.decode_image``)."""

    max_items: int
    default: Any = _REQUIRED

    def check(self, key: str, value: Any) -> list:
        if not isinstance(value, list) or not 1 <= len(value) <= self.max_items:
            raise _bad(key, f"a list of 1..{self.max_items} images", value)
        for i, item in enumerate(value):
            if not isinstance(item, (bytes, np.ndarray)):
                raise _bad(f"{key}[{i}]", "encoded PNG/JPEG bytes or a uint8 (H, W, 3) array", item)
        return value


NAME = Text(MAX_NAME_ARGUMENT_CHARS)

#: opcode -> {argument: checker}; requests not listed take no arguments
ARGUMENTS: dict[int, dict[str, Any]] = {
    P.Opcode.FLASH_BEGIN: {"size": Int(1, MAX_FLASH_BYTES), "sha256": Sha256()},
    P.Opcode.FLASH_CHUNK: {"offset": Int(0, MAX_FLASH_BYTES), "data": Blob(1, P.MAX_BODY_BYTES),
                           "crc32": Int(0, 0xFFFF_FFFF, default=None)},
    P.Opcode.ENROLL_IMAGES: {"name": NAME, "images": Images(MAX_ENROLL_IMAGES)},
    P.Opcode.ENROLL_CAMERA: {"name": NAME, "n_frames": Int(*ENROLL_CAMERA_FRAMES, default=10)},
    P.Opcode.GALLERY_DELETE: {"name": NAME},
    P.Opcode.GALLERY_CROPS: {"name": NAME, "max_crops": Int(1, 8, default=3)},
    P.Opcode.DEBUG_EMBEDDINGS: {"on": Bool(), "explain": Bool(default=False)},
    P.Opcode.LOG_TAIL: {"n": Int(0, MAX_LOG_TAIL_LINES, default=50)},
}


def parse_arguments(opcode: int, payload: Any) -> dict:
    """The checked arguments of a request (defaults filled in); ``RequestError(BAD_REQUEST)`` otherwise."""
    if not isinstance(payload, dict):
        raise RequestError(P.Status.BAD_REQUEST, f"payload: expected a JSON object, found {_found(payload)}")
    args = {}
    for key, checker in ARGUMENTS.get(opcode, {}).items():
        if key not in payload or payload[key] is None and checker.default is not _REQUIRED:
            if checker.default is _REQUIRED:
                raise RequestError(P.Status.BAD_REQUEST, f"argument {key!r}: missing", argument=key)
            args[key] = checker.default
            continue
        args[key] = checker.check(key, payload[key])
    return args
