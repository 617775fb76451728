"""Every request argument checked (type, range, size) before the real BoardApp sees it: never INTERNAL_ERROR.

The server and the real ``BoardApp`` (a test bundle booted, no camera) in this process, frames fed straight into
``Server.handle`` (no line, no threads), so hypothesis can try many payloads quickly.  JSON text is written by
hand where it must hold what ``json.dumps(allow_nan=False)`` cannot: ``1e99999`` (infinity), ``NaN``.
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearface.firmware import protocol as P
from wearface.firmware.app import BoardApp
from wearface.firmware.request_args import ARGUMENTS, MAX_LOG_TAIL_LINES
from wearface.firmware.server import Server

from .conftest import flash_app, make_board, signed_bundle


class CapturePort:
    """Collects what the server writes; the host is always present."""

    host_present = True

    def __init__(self):
        self.written = []

    def write(self, data, timeout_s):
        self.written.append(data)
        return True


def raw_request(seq: int, code: int, json_text: bytes, blob: bytes = b"") -> bytes:
    """A request frame whose JSON part is ``json_text`` verbatim."""
    body = P.HEADER.pack(P.PROTOCOL_VERSION, int(P.Kind.REQUEST), seq, code, 0, len(json_text)) + json_text + blob
    body += struct.pack("<I", zlib.crc32(body))
    return b"\xc0" + P.slip_escape(body) + b"\xc0"


def answer(server: Server, wire: bytes, seq: int) -> P.Frame:
    for item in server.decoder.feed(wire):
        if isinstance(item, P.Frame):
            server.handle(item)
        else:
            server._fault(item)
    frames = []
    while not server._out.empty():
        data, _ = server._out.get_nowait()
        frames += [f for f in P.FrameDecoder().feed(data) if isinstance(f, P.Frame)]
    mine = [f for f in frames if f.seq == seq]
    assert len(mine) == 1, frames
    return mine[0]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """(server, app): the real app with a confirmed test bundle, its camera ended (enrol from camera refuses)."""
    app = BoardApp(make_board(tmp_path_factory.mktemp("board")), frames=[])
    flash_app(app, signed_bundle(3))
    app.reboot()
    app.wait_loop(10)
    app.reboot = lambda: None  # REBOOT is answered, the app stays as it is (a reboot takes seconds)
    server = Server(CapturePort(), app)
    yield server, app
    app.close()


@pytest.mark.parametrize("code, text, argument", [
    (P.Opcode.LOG_TAIL, b'{"n": 1e99999}', "n"),
    (P.Opcode.LOG_TAIL, b'{"n": NaN}', "n"),
    (P.Opcode.LOG_TAIL, b'{"n": 5.0}', "n"),
    (P.Opcode.LOG_TAIL, b'{"n": 10000000000000000000000000000}', "n"),
    (P.Opcode.LOG_TAIL, b'{"n": -1}', "n"),
    (P.Opcode.LOG_TAIL, b'{"n": "7"}', "n"),
    (P.Opcode.ENROLL_CAMERA, b'{"name": "ada", "n_frames": 1e99999}', "n_frames"),
    (P.Opcode.ENROLL_CAMERA, b'{"name": "ada", "n_frames": -Infinity}', "n_frames"),
    (P.Opcode.ENROLL_CAMERA, b'{"name": "ada", "n_frames": 0}', "n_frames"),
    (P.Opcode.FLASH_BEGIN, b'{"size": 1e99999, "sha256": "00"}', "size"),
    (P.Opcode.FLASH_BEGIN, b'{"size": 100, "sha256": "00"}', "sha256"),
    (P.Opcode.FLASH_CHUNK, b'{"offset": 0, "data": "x", "crc32": 1.5}', "data"),
    (P.Opcode.DEBUG_EMBEDDINGS, b'{"on": "false"}', "on"),
    (P.Opcode.DEBUG_EMBEDDINGS, b'{"on": 1}', "on"),
    (P.Opcode.DEBUG_EMBEDDINGS, b'{}', "on"),
    (P.Opcode.GALLERY_DELETE, b'{"name": ["bob"]}', "name"),
    (P.Opcode.ENROLL_IMAGES, b'{"name": "ada", "images": []}', "images"),
    (P.Opcode.ENROLL_IMAGES, b'{"name": "ada", "images": [7]}', "images[0]"),
])
def test_bad_arguments_are_bad_requests_naming_the_argument(running, code, text, argument):
    server, app = running
    frame = answer(server, raw_request(9, code, text), 9)
    assert frame.status == P.Status.BAD_REQUEST, frame.payload
    assert frame.payload["error"].startswith(f"argument {argument!r}: "), frame.payload
    assert frame.payload["argument"] == argument


def test_good_arguments_still_work(running):
    server, app = running
    frame = answer(server, raw_request(10, P.Opcode.LOG_TAIL, b'{"n": 3}'), 10)
    assert frame.status == P.Status.OK and len(frame.payload["lines"]) == 3
    frame = answer(server, raw_request(11, P.Opcode.LOG_TAIL, b'{}'), 11)  # n defaults to 50
    assert frame.status == P.Status.OK
    frame = answer(server, raw_request(12, P.Opcode.LOG_TAIL, json.dumps({"n": MAX_LOG_TAIL_LINES + 1}).encode()), 12)
    assert frame.status == P.Status.BAD_REQUEST and str(MAX_LOG_TAIL_LINES) in frame.payload["error"]


_ARG_NAMES = sorted({k for args in ARGUMENTS.values() for k in args} | {"n", "x"})
_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=12), st.sampled_from(["  bob  ", "a\u2028b", "x\u0085", "\u202eevil", "0" * 64])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)
_BLOB_VALUES = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda h, w, c, seed: np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8),
              st.integers(0, 40), st.integers(0, 40), st.sampled_from([1, 3, 4]), st.integers(0, 9)),
    st.builds(lambda n: np.zeros(n, np.float32), st.integers(0, 8)),
    st.sampled_from([b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00.\xe0\x00\x00.\xe0\x08\x02\x00\x00\x00",
                     b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03", b"\xff\xd8\xff\xd9", b"GIF89a"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(code=st.sampled_from([int(o) for o in P.Opcode]), data=st.data())
def test_any_arguments_get_a_status_never_internal_error(running, code, data):
    server, app = running
    keys = sorted(ARGUMENTS.get(code, {})) + _ARG_NAMES
    payload = data.draw(st.dictionaries(st.sampled_from(keys), st.one_of(_JSON_VALUES, _BLOB_VALUES,
                                                                         st.lists(_BLOB_VALUES, max_size=3)),
                                        max_size=4))
    blob = bytearray()
    tree = P._jsonable(payload, blob)  # arrays and bytes into the blob, as the host's packer does
    # JSON that Python reads as inf / nan, as the tester's 1e99999 (json.dumps writes Infinity / NaN)
    text = json.dumps(tree, allow_nan=True).replace("Infinity", "1e99999").encode()
    frame = answer(server, raw_request(21, code, text, bytes(blob)), 21)
    assert frame.status in set(P.Status)
    assert frame.status != P.Status.INTERNAL_ERROR, (P.Opcode(code).name, payload, frame.payload)
    if frame.status != P.Status.OK:
        assert frame.payload.get("error")
