"""firmware/server.py against the fake app, over a real pty, spoken to by host_tools/device/link.py."""
from __future__ import annotations

import hashlib
import os
import threading
import tty

import numpy as np
import pytest
import serial

from wearface.firmware import protocol as P
from wearface.firmware.server import FdPort, Server
from wearface.host_tools.device.link import Link
from wearface.host_tools.errors import BoardError, NoFaceError, UnknownNameError

from .fake_app import FakeApp


@pytest.fixture
def board():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    app = FakeApp()
    server = Server(FdPort(master), app)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    yield path, app, server
    stop.set()
    thread.join(timeout=2)
    os.close(master)


def test_info_stats_log_and_gallery(board):
    path, app, server = board
    with Link(path, timeout_s=1.0) as link:
        info = link.request(P.Opcode.INFO)
        assert info["compatible"] == "wearface-virtual" and info["protocol"] == P.PROTOCOL_VERSION
        assert link.request(P.Opcode.STATS)["serial"]["requests"] >= 1
        assert link.request(P.Opcode.LOG_TAIL, {"n": 3})["lines"] == ["line 0", "line 1", "line 2"]
        img = np.full((8, 8, 3), 200, np.uint8)
        out = link.request(P.Opcode.ENROLL_IMAGES, {"name": "ada", "images": [img, img]})
        assert out["n_embeddings"] == 2
        assert link.request(P.Opcode.GALLERY_LIST)["people"] == [{"name": "ada", "n_embeddings": 2}]
        with pytest.raises(NoFaceError):
            link.request(P.Opcode.ENROLL_IMAGES, {"name": "bob", "images": [np.zeros((8, 8, 3), np.uint8)]})
        with pytest.raises(UnknownNameError):
            link.request(P.Opcode.GALLERY_DELETE, {"name": "nobody"})
        assert link.request(P.Opcode.GALLERY_DELETE, {"name": "ada"})["deleted"] == 2


def test_bad_input_gets_a_status_and_the_loop_keeps_running(board):
    path, app, server = board
    with Link(path, timeout_s=1.0, retries=0) as link:
        frame = link.request_frame(200)
        assert frame.status == P.Status.UNKNOWN_OPCODE
        frame = link.request_frame(P.Opcode.FLASH_BEGIN, {"size": "big"})
        assert frame.status == P.Status.BAD_REQUEST and "size" in frame.payload["error"]
        frame = link.request_frame(P.Opcode.FLASH_CHUNK, {"offset": 0, "data": b"x"})
        assert frame.status == P.Status.APP_ERROR and frame.payload["reason"] == "no_flash_in_progress"
        with pytest.raises(BoardError):
            link.request(P.Opcode.ENROLL_IMAGES, {"name": "x", "images": [b"not an image"]})
        assert link.request(P.Opcode.PING)["t"] > 0
    # garbage straight onto the line: answered with BAD_FRAME, then a request still works
    with serial.Serial(path, timeout=1.0) as raw:
        raw.write(b"\xc0hello\xdb\x01\xc0")
        dec = P.FrameDecoder()
        frames = []
        while not frames:
            frames = [f for f in dec.feed(raw.read(1)) if isinstance(f, P.Frame)]
        assert frames[0].status == P.Status.BAD_FRAME and frames[0].seq == P.RESPONSE_SEQ_UNKNOWN
    with Link(path, timeout_s=1.0) as link:
        assert link.request(P.Opcode.PING)
    assert server.counters["bad_frames"] >= 1


def test_flash_resumes_and_events_arrive(board):
    path, app, server = board
    blob = os.urandom(20000)
    sha = hashlib.sha256(blob).digest()
    got = []
    with Link(path, timeout_s=1.0, on_event=got.append) as link:
        begin = link.request(P.Opcode.FLASH_BEGIN, {"size": len(blob), "sha256": sha})
        assert begin["offset"] == 0
        link.request(P.Opcode.FLASH_CHUNK, {"offset": 0, "data": blob[:4096]})
        # host "restarts": a new begin with the same hash resumes at the board's offset
        begin = link.request(P.Opcode.FLASH_BEGIN, {"size": len(blob), "sha256": sha})
        assert begin["offset"] == 4096
        off = 4096
        while off < len(blob):
            off = link.request(P.Opcode.FLASH_CHUNK, {"offset": off, "data": blob[off:off + 4096]})["offset"]
        frame = link.request_frame(P.Opcode.FLASH_CHUNK, {"offset": 7, "data": b"x"})
        assert frame.status == P.Status.FLASH_OFFSET
        assert link.request(P.Opcode.FLASH_END)["pending"] is True
        app.emit("recognised", name="ada", embedding=np.ones(4, np.float32))
        ev = link.next_event(timeout_s=2.0)
        assert ev.payload["event"] == "recognised" and ev.payload["embedding"].tolist() == [1, 1, 1, 1]
        link.request(P.Opcode.REBOOT)
    assert app.reboots == 1


class _CapturePort:
    """A port that collects what the server writes (no line, no threads needed for ``handle``)."""

    def __init__(self):
        self.written = []

    def write(self, data, timeout_s):
        self.written.append(data)
        return True


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(code=st.integers(0, 255), payload=st.dictionaries(
    st.sampled_from(["name", "images", "size", "sha256", "offset", "data", "crc32", "n", "on", "n_frames"]),
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=8), st.binary(max_size=40),
              st.lists(st.binary(max_size=20), max_size=3)), max_size=5),
    noise=st.binary(max_size=200))
def test_server_answers_any_request_with_a_status(code, payload, noise):
    app = FakeApp()
    app.reboot = lambda: None
    server = Server(_CapturePort(), app)
    wire = noise + P.encode_frame(P.Kind.REQUEST, 5, code, payload)
    for item in server.decoder.feed(wire):
        if isinstance(item, P.Frame):
            server.handle(item)
        else:
            server._fault(item)
    answers = []
    while not server._out.empty():
        data, _ = server._out.get_nowait()
        answers += [f for f in P.FrameDecoder().feed(data) if isinstance(f, P.Frame)]
    mine = [f for f in answers if f.seq == 5]
    assert len(mine) == 1 and mine[0].code == code
    assert mine[0].status in set(P.Status)
    assert mine[0].status != P.Status.INTERNAL_ERROR, mine[0].payload
