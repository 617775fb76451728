"""The serial protocol between host and board: framing, opcodes, status codes, payloads.

One job: turn messages into bytes on the wire and back.  Shared by the board (``firmware/server.py``)
and the host (``host_tools/device/link.py``); imports numpy and the standard library only (no serial, no threads).

Wire format (all integers little-endian)::

    frame on the wire = END | SLIP(body) | END                       (RFC 1055 SLIP, END = 0xC0)
    body              = header | json | blob | crc32
    header            = struct "<BBHBBI": version, kind, seq, code, status, json_len
    json              = UTF-8 JSON object (json_len bytes): the message's arguments / results
    blob              = raw bytes (the rest): flash chunks, images, embeddings, referenced from json
    crc32             = CRC-32 (zlib / IEEE 802.3) of header|json|blob, uint32

Why SLIP + CRC-32: SLIP's escaping is two ``bytes.replace`` calls in C on both sides, so a Python board keeps up
with a megabit line; its overhead on weight-like (uniform) bytes is 2/256 = 0.8 %.  A frame is delimited by
END, so after noise or a cut the decoder resynchronises at the next END without any length field to trust.
CRC-32 instead of CRC-16: frames carry up to several KB (flash chunks) or hundreds of KB (enrolment images);
CRC-16 keeps Hamming distance 4 only up to 4 KB and lets 1 in 65 536 random corruptions through, CRC-32
1 in 4.3e9, and ``zlib.crc32`` runs in C.

Kinds: REQUEST (host -> board, ``code`` = :class:`Opcode`), RESPONSE (board -> host, same ``seq`` and ``code``
as the request, ``status`` = :class:`Status`), EVENT (board -> host, unsolicited; ``seq`` counts events modulo
2**16 so the host can count lost ones; ``code`` = 0).

Payloads: a JSON object whose numpy arrays and ``bytes`` values are moved into the blob and replaced by a
reference ``{"$bin": [offset, size_bytes], "dtype": "uint8", "shape": [h, w, c]}`` (``dtype``/``shape`` only
for arrays).  :func:`pack_payload` / :func:`unpack_payload` do the moving both ways.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from .errors import FirmwareError

PROTOCOL_VERSION = 1
SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC
SLIP_ESC_ESC = 0xDD
HEADER = struct.Struct("<BBHBBI")
CRC = struct.Struct("<I")
#: debug embeddings are switched off when the host that asked for them sends no request for this many seconds
#: (or its end of the line closes); a host that wants them keeps sending (``wearface monitor`` pings every third)
DEBUG_SESSION_IDLE_S = 10.0
#: largest body (header + json + blob + crc) either side accepts; bigger frames are dropped as FRAME_TOO_LONG
MAX_BODY_BYTES = 2 * 1024 * 1024
#: default flash chunk: 4 KiB keeps a chunk's round trip at 115200 baud under 0.4 s and the framing under 1 %
DEFAULT_CHUNK_BYTES = 4096
#: array dtypes a payload may carry (anything else is a BAD_REQUEST: no object arrays over the wire)
ARRAY_DTYPES = frozenset({"uint8", "int8", "int16", "uint16", "int32", "uint32", "float16", "float32", "float64"})
BIN_KEY = "$bin"
#: ANSWER_PART: the most bytes one part may ask for
MAX_ANSWER_PART_BYTES = 65536
EVENT_SEQ_MODULO = 1 << 16


class Kind(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    EVENT = 3


class Opcode(IntEnum):
    """What a request asks for.  Arguments and results are listed in docs/PROTOCOL.md."""

    PING = 0
    INFO = 1
    FLASH_BEGIN = 2
    FLASH_CHUNK = 3
    FLASH_END = 4
    REBOOT = 5
    ENROLL_IMAGES = 6
    ENROLL_CAMERA = 7
    GALLERY_LIST = 8
    GALLERY_DELETE = 9
    DEBUG_EMBEDDINGS = 10
    STATS = 11
    LOG_TAIL = 12
    GALLERY_CROPS = 13
    #: a piece of a kept answer (for long answers over a damaging line; see docs/PROTOCOL.md, Reliability)
    ANSWER_PART = 14


class Status(IntEnum):
    """The board's answer to one request.  Non-OK answers carry ``{"error": "..."}`` and sometimes more."""

    OK = 0
    BAD_FRAME = 1          # CRC or framing error; seq is RESPONSE_SEQ_UNKNOWN, the host should resend
    BAD_VERSION = 2        # header version is not PROTOCOL_VERSION
    UNKNOWN_OPCODE = 3
    BAD_REQUEST = 4        # arguments missing or of the wrong type
    BUSY = 5               # another long operation runs; retry later
    FLASH_OFFSET = 6       # chunk offset is not where the board is; payload "offset" = where to resume
    CHUNK_CRC = 7          # a chunk's own crc32 does not match its bytes
    FLASH_REJECTED = 8     # flash_end: the written bundle failed verification ("reason")
    NOT_FOUND = 9          # e.g. an unknown gallery name
    NO_FACE = 10
    MANY_FACES = 11
    APP_ERROR = 12         # the board refused for a reason given in "error"
    INTERNAL_ERROR = 13    # a bug on the board; the loop keeps running


#: seq of a BAD_FRAME answer when the request's own seq could not be trusted
RESPONSE_SEQ_UNKNOWN = 0xFFFF


class ProtocolError(FirmwareError):
    """Bytes that are not a valid frame or payload.  ``status`` says which Status answers it."""

    def __init__(self, message: str, status: Status = Status.BAD_FRAME):
        super().__init__(message)
        self.status = status


@dataclass
class Frame:
    """One decoded message.  ``payload`` is the JSON object with binary references already resolved."""

    kind: Kind
    seq: int
    code: int
    status: int = 0
    payload: dict = field(default_factory=dict)
    #: CRC-32 of the body as received (0 for frames built locally): with seq, identifies a resent request
    crc: int = field(default=0, compare=False)

    @property
    def opcode(self) -> Opcode | int:
        try:
            return Opcode(self.code)
        except ValueError:
            return self.code


# ---------------------------------------------------------------- payloads


def _jsonable(value: Any, blob: bytearray) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.name not in ARRAY_DTYPES:
            raise ProtocolError(f"payload: array dtype {value.dtype} cannot travel (allowed: {sorted(ARRAY_DTYPES)})",
                                Status.BAD_REQUEST)
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        ref = {BIN_KEY: [len(blob), len(data)], "dtype": value.dtype.name, "shape": list(value.shape)}
        blob += data
        return ref
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        ref = {BIN_KEY: [len(blob), len(data)]}
        blob += data
        return ref
    if isinstance(value, dict):
        return {str(k): _jsonable(v, blob) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, blob) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, IntEnum):
        return int(value)
    return value


def pack_payload(payload: dict | None) -> tuple[bytes, bytes]:
    """Split ``payload`` into (json bytes, blob).  Arrays and bytes go to the blob, by reference."""
    blob = bytearray()
    tree = _jsonable(payload or {}, blob)
    try:
        text = json.dumps(tree, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"payload: not JSON-serialisable ({exc})", Status.INTERNAL_ERROR) from exc
    return text, bytes(blob)


def _resolve(value: Any, blob: bytes) -> Any:
    if isinstance(value, dict):
        if BIN_KEY in value:
            ref = value[BIN_KEY]
            if (not isinstance(ref, list) or len(ref) != 2 or not all(type(x) is int for x in ref)
                    or ref[0] < 0 or ref[1] < 0 or ref[0] + ref[1] > len(blob)):
                raise ProtocolError(f"payload: binary reference {ref!r} outside the {len(blob)}-byte blob",
                                    Status.BAD_REQUEST)
            data = blob[ref[0]:ref[0] + ref[1]]
            if "dtype" not in value:
                return data
            dtype, shape = value.get("dtype"), value.get("shape")
            if dtype not in ARRAY_DTYPES or not isinstance(shape, list) or not all(
                    type(s) is int and 0 <= s for s in shape):
                raise ProtocolError(f"payload: bad array reference dtype={dtype!r} shape={shape!r}", Status.BAD_REQUEST)
            dt = np.dtype(dtype).newbyteorder("<")
            count = 1
            for s in shape:
                count *= s
            if count * dt.itemsize != len(data):
                raise ProtocolError(f"payload: array {dtype}{shape} needs {count * dt.itemsize} bytes, "
                                    f"reference has {len(data)}", Status.BAD_REQUEST)
            return np.frombuffer(data, dtype=dt).astype(np.dtype(dtype), copy=True).reshape(shape)
        return {k: _resolve(v, blob) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, blob) for v in value]
    return value


def unpack_payload(text: bytes, blob: bytes) -> dict:
    """Inverse of :func:`pack_payload`.  Raises ProtocolError(BAD_REQUEST) on anything malformed."""
    if not text:
        return {}
    try:
        tree = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload: JSON part unreadable ({exc.__class__.__name__}: {exc})",
                            Status.BAD_REQUEST) from exc
    if not isinstance(tree, dict):
        raise ProtocolError(f"payload: expected a JSON object, found {type(tree).__name__}", Status.BAD_REQUEST)
    try:
        return _resolve(tree, blob)
    except RecursionError as exc:
        raise ProtocolError("payload: nested too deep", Status.BAD_REQUEST) from exc


# ---------------------------------------------------------------- frames


def slip_escape(body: bytes) -> bytes:
    return body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")


def slip_unescape(data: bytes) -> bytes:
    """Undo :func:`slip_escape`; an ESC not followed by ESC_END / ESC_ESC is a framing error."""
    escapes = data.count(b"\xdb")
    if escapes and escapes != data.count(b"\xdb\xdc") + data.count(b"\xdb\xdd"):
        raise ProtocolError("frame: invalid SLIP escape sequence")
    return data.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")


def encode_frame(kind: Kind, seq: int, code: int, payload: dict | None = None, status: int = 0) -> bytes:
    """One message -> the bytes to write, END-delimited on both sides."""
    text, blob = pack_payload(payload)
    body = HEADER.pack(PROTOCOL_VERSION, int(kind), seq & 0xFFFF, int(code) & 0xFF, int(status) & 0xFF,
                       len(text)) + text + blob
    if len(body) + CRC.size > MAX_BODY_BYTES:
        raise ProtocolError(f"frame: body of {len(body) + CRC.size} bytes exceeds MAX_BODY_BYTES={MAX_BODY_BYTES}",
                            Status.BAD_REQUEST)
    body += CRC.pack(zlib.crc32(body))
    return b"\xc0" + slip_escape(body) + b"\xc0"


def frame_crc(encoded: bytes) -> int:
    """The CRC-32 field of an encoded frame (what the board keys its kept answers by, with seq and code)."""
    (crc,) = CRC.unpack_from(slip_unescape(encoded.strip(b"\xc0")), -CRC.size)
    return crc


def decode_body(body: bytes) -> Frame:
    """Unescaped body -> Frame.  Raises ProtocolError with the status that answers the fault."""
    if len(body) < HEADER.size + CRC.size:
        raise ProtocolError(f"frame: {len(body)} bytes, shorter than header+crc ({HEADER.size + CRC.size})")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    content = body[:-CRC.size]
    if zlib.crc32(content) != crc:
        raise ProtocolError(f"frame: CRC-32 mismatch over {len(content)} bytes "
                            f"(frame says {crc:08x}, bytes give {zlib.crc32(content):08x})")
    version, kind, seq, code, status, json_len = HEADER.unpack_from(content)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"frame: protocol version {version}, expected {PROTOCOL_VERSION}", Status.BAD_VERSION)
    if kind not in (1, 2, 3):
        raise ProtocolError(f"frame: kind {kind} is not request(1)/response(2)/event(3)")
    if HEADER.size + json_len > len(content):
        raise ProtocolError(f"frame: json_len {json_len} runs past the {len(content)}-byte body", Status.BAD_REQUEST)
    text = content[HEADER.size:HEADER.size + json_len]
    blob = content[HEADER.size + json_len:]
    frame = Frame(Kind(kind), seq, code, status, crc=crc)
    frame.payload = unpack_payload(text, blob)  # may raise BAD_REQUEST; the header is still known
    return frame


def peek_header(body: bytes) -> tuple[int, int, int] | None:
    """(kind, seq, code) of a CRC-valid body whose payload failed to parse, to answer it by its seq."""
    if len(body) < HEADER.size + CRC.size:
        return None
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if zlib.crc32(body[:-CRC.size]) != crc:
        return None
    _, kind, seq, code, _, _ = HEADER.unpack_from(body)
    return kind, seq, code


@dataclass
class DecodeFault:
    """Something between two END bytes that was not a frame (noise, a cut frame, a corrupted one)."""

    error: ProtocolError
    raw: bytes
    #: (kind, seq, code) when the CRC held but the payload did not parse, so it can be answered by seq
    header: tuple[int, int, int] | None = None


class FrameDecoder:
    """Incremental decoder: feed any byte pieces, get back frames and faults in arrival order.

    Survives noise, split frames and garbage between frames: everything is cut at END bytes; a piece that does
    not decode is returned as a :class:`DecodeFault` and the decoder carries on.  Memory is bounded: a run of
    bytes without END longer than the largest legal escaped frame is dropped (one fault) until the next END.
    """

    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES):
        self.max_escaped = 2 * max_body_bytes
        self._buf = bytearray()
        self._overflow = False
        self.frames_ok = 0
        self.faults = 0

    def feed(self, data: bytes) -> list[Frame | DecodeFault]:
        out: list[Frame | DecodeFault] = []
        pieces = bytes(data).split(b"\xc0")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if not self._overflow:
                self._buf += piece
                if len(self._buf) > self.max_escaped:
                    self._overflow = True
                    self._buf.clear()
                    self.faults += 1
                    out.append(DecodeFault(ProtocolError(
                        f"frame: no END within {self.max_escaped} bytes; dropped until the next END"), b""))
            if last:
                break
            # an END closes whatever is buffered
            if self._overflow:
                self._overflow = False
            elif self._buf:
                raw = bytes(self._buf)
                out.append(self._decode(raw))
            self._buf.clear()
        return out

    def _decode(self, raw: bytes) -> Frame | DecodeFault:
        body = b""
        try:
            body = slip_unescape(raw)
            frame = decode_body(body)
        except ProtocolError as exc:
            self.faults += 1
            header = peek_header(body) if exc.status != Status.BAD_FRAME else None
            return DecodeFault(exc, raw, header)
        self.frames_ok += 1
        return frame
