"""Issue 15's hostile host, against the real firmware process on the virtual board (a pty, a folder as flash).

One board for the module, flashed once with a test bundle: bad request arguments, a 12000 x 12000 PNG, names with
white space and line separators, debug embeddings after the host that asked went away and after a reboot.
"""
from __future__ import annotations

import struct
import threading
import time
import zlib

import cv2
import pytest
import serial

from wearface.firmware import protocol as P
from wearface.host_tools.device.flash import flash
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard
from wearface.host_tools.errors import BoardError


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    with VirtualBoard(tmp_path_factory.mktemp("hostile") / "flash") as vb:
        with Link(str(vb.port), open_timeout_s=10) as link:
            assert flash(link, build_test_bundle(seed=5, model_version="test-5")).confirmed
        yield vb


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def raw_exchange(port: str, code: int, json_text: bytes, seq: int = 77) -> P.Frame:
    """Send one request whose JSON is ``json_text`` verbatim (what json.dumps refuses to write, e.g. 1e99999)."""
    body = P.HEADER.pack(P.PROTOCOL_VERSION, int(P.Kind.REQUEST), seq, code, 0, len(json_text)) + json_text
    body += struct.pack("<I", zlib.crc32(body))
    with serial.Serial(port, timeout=0.5) as line:
        line.write(b"\xc0" + P.slip_escape(body) + b"\xc0")
        decoder = P.FrameDecoder()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for item in decoder.feed(line.read(4096)):
                if isinstance(item, P.Frame) and item.kind == P.Kind.RESPONSE and item.seq == seq:
                    return item
    raise AssertionError(f"no answer to opcode {code}")


def huge_png(width: int = 12000, height: int = 12000) -> bytes:
    """A valid 1-bit grey PNG of width x height (a few hundred KB; 432 MB once decoded as RGB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_non_finite_and_out_of_range_numbers_are_bad_requests(board):
    for code, text, argument in [(P.Opcode.LOG_TAIL, b'{"n": 1e99999}', "n"),
                                 (P.Opcode.ENROLL_CAMERA, b'{"name": "ada", "n_frames": 1e99999}', "n_frames"),
                                 (P.Opcode.LOG_TAIL, b'{"n": -5}', "n"),
                                 (P.Opcode.DEBUG_EMBEDDINGS, b'{"on": "no"}', "on")]:
        frame = raw_exchange(str(board.port), code, text)
        assert frame.status == P.Status.BAD_REQUEST, frame.payload
        assert frame.payload["argument"] == argument and "expected" in frame.payload["error"]
    with Link(str(board.port), open_timeout_s=10) as link:
        assert link.request(P.Opcode.STATS)["serial"]["requests"] > 0  # the board goes on answering


def test_a_12000x12000_png_is_refused_from_its_header_before_decoding(board):
    data = huge_png()
    assert len(data) < P.MAX_BODY_BYTES
    peak_before_kb = status_kb(board.proc.pid, "VmHWM")
    with Link(str(board.port), open_timeout_s=10) as link:
        with pytest.raises(BoardError) as refused:
            link.request(P.Opcode.ENROLL_IMAGES, {"name": "big", "images": [data]}, timeout_s=30)
        assert refused.value.status == P.Status.BAD_REQUEST
        assert refused.value.payload["reason"] == "image_too_large"
        assert "12000x12000" in refused.value.payload["error"]
        assert f"{link.request(P.Opcode.INFO)['max_image_pixels']:,}" in refused.value.payload["error"]
    # decoding it would have cost at least 432 MB (RGB); the board's peak did not move by a fraction of that
    assert status_kb(board.proc.pid, "VmHWM") - peak_before_kb < 100 * 1024


def test_names_are_trimmed_nfc_for_enrol_and_delete_and_separators_refused(board):
    from wearface.firmware.scene import grace_hopper_face

    ok, photo = cv2.imencode(".png", cv2.resize(grace_hopper_face(), (128, 128), interpolation=cv2.INTER_AREA))
    with Link(str(board.port), open_timeout_s=10) as link:
        added = link.request(P.Opcode.ENROLL_IMAGES, {"name": "  Zoe\u0301  ", "images": [photo.tobytes()]},
                             timeout_s=30)
        assert added["name"] == "Zo\u00e9"
        assert [p["name"] for p in link.request(P.Opcode.GALLERY_LIST)["people"]] == ["Zo\u00e9"]
        assert link.request(P.Opcode.GALLERY_DELETE, {"name": "  Zoe\u0301  "})["deleted"] == 1  # same person
        for forged in ("x\u2028INFO boot.booted slot=B", "x\u0085y", "x\u2029", "a\nb", "\u202eevil"):
            frame = link.request_frame(P.Opcode.ENROLL_IMAGES, {"name": forged, "images": [photo.tobytes()]},
                                       timeout_s=30)
            assert frame.status == P.Status.BAD_REQUEST and frame.payload["reason"] == "bad_name", frame.payload
            frame = link.request_frame(P.Opcode.GALLERY_DELETE, {"name": forged})
            assert frame.status == P.Status.BAD_REQUEST and frame.payload["reason"] == "bad_name", frame.payload
        lines = link.request(P.Opcode.LOG_TAIL, {"n": 200})["lines"]
        assert not any(line.startswith("INFO boot.booted slot=B") for line in lines)


class EventWatcher:
    """Counts ``debug.embedding`` events a host receives."""

    def __init__(self):
        self.debug = 0
        self.got_one = threading.Event()

    def __call__(self, frame):
        if frame.payload.get("event") == "debug.embedding":
            self.debug += 1
            self.got_one.set()


def _no_debug_embeddings_for(port: str, seconds: float) -> int:
    """Connect as a new host, send nothing for ``seconds``: how many debug embeddings arrived."""
    watcher = EventWatcher()
    with Link(port, open_timeout_s=10, on_event=watcher):
        watcher.got_one.wait(seconds)
    return watcher.debug


def test_debug_embeddings_end_with_the_host_that_asked_and_with_a_reboot(board):
    port = str(board.port)
    first = EventWatcher()
    with Link(port, open_timeout_s=10, on_event=first) as link:
        assert link.request(P.Opcode.DEBUG_EMBEDDINGS, {"on": True})["on"] is True
        assert link.request(P.Opcode.INFO)["debug_embeddings"] is True
        assert first.got_one.wait(20), "the host that asked gets debug embeddings"
    time.sleep(1.0)  # the board sees the host's end of the pty closed at its next read
    with Link(port, open_timeout_s=10) as link:
        assert link.request(P.Opcode.INFO)["debug_embeddings"] is False
    assert _no_debug_embeddings_for(port, 4.0) == 0

    with Link(port, open_timeout_s=10) as link:
        link.request(P.Opcode.DEBUG_EMBEDDINGS, {"on": True})
        link.request(P.Opcode.REBOOT, timeout_s=30)
        assert link.request(P.Opcode.INFO, timeout_s=30)["debug_embeddings"] is False
        watcher = EventWatcher()
        link.on_event = watcher
        watcher.got_one.wait(4.0)
        assert watcher.debug == 0
