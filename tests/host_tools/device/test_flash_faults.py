"""Flash over a bad line: the real firmware on the virtual board, behind a proxy that flips or drops bytes.

Seeded faults; no timing assertions.  What must hold: INFO (a ~1 KB answer) and every flash request get through
1 % flipped bytes both ways; the chunk size shrinks when chunks fail and grows back when the line is clean; a
whole bundle flashes through 0.1 % dropped bytes.
"""
from __future__ import annotations

import hashlib

import pytest

from wearface.firmware import protocol as P
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import ChunkSizer, flash, upload
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard


@pytest.fixture(scope="module")
def bundle_bytes():
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    return build_test_bundle(seed=3)


@pytest.fixture
def board(tmp_path):
    with VirtualBoard(tmp_path / "flash") as vb:
        yield vb


def test_info_and_chunks_cross_one_percent_flips_and_chunks_grow_back(board, tmp_path, bundle_bytes):
    part = bundle_bytes[:24 * 1024]  # the board takes it as a whole image of that size; FLASH_END is not sent
    with FaultProxy(board.port, tmp_path / "noisy", corrupt_p=0.01, seed=5) as proxy:
        with Link(str(tmp_path / "noisy"), timeout_s=0.5, retries=10, open_timeout_s=10) as link:
            info = link.request(P.Opcode.INFO)
            assert info["state"] == "recovery" and "public_keys" in info
            assert link.stats.answers_in_parts >= 1  # 1 KB whole copies almost never cross 1 % flips

            def clean_after_12k(done, total):
                if done >= 8 * 1024:
                    proxy.corrupt_p = 0.0
            sizer = ChunkSizer(4096)
            upload(link, part, chunk_bytes=4096, window=2, progress=clean_after_12k, sizer=sizer)
            again = link.request(P.Opcode.FLASH_BEGIN, {"size": len(part), "sha256": hashlib.sha256(part).digest()})
    assert again["offset"] == len(part)
    assert proxy.counters["corrupted"] > 100 and link.stats.bad_frames_rx > 0
    assert sizer.smallest <= 256          # shrank to the line
    assert sizer.size == 4096             # and grew back once it was clean
    sizes = [size for _, size in sizer.history]
    assert sizes.index(sizer.smallest) < len(sizes) - 1


@pytest.mark.slow  # ~60 s on the loaded 2-core machine: 800 KB in ~1 KB chunks
def test_whole_bundle_flashes_through_dropped_bytes(board, tmp_path, bundle_bytes):
    with FaultProxy(board.port, tmp_path / "lossy", drop_p=0.001, seed=7) as proxy:
        with Link(str(tmp_path / "lossy"), timeout_s=0.5, retries=10, open_timeout_s=10) as link:
            sizer = ChunkSizer(16384)
            result = flash(link, bundle_bytes, reboot=False, chunk_bytes=16384, sizer=sizer)
    assert result.sha256 == hashlib.sha256(bundle_bytes).hexdigest()
    assert proxy.counters["dropped"] > 100
    assert sizer.smallest < 16384 and sizer.failures > 0


def test_decoder_resyncs_after_dropped_bytes_and_ends():
    frames = [P.encode_frame(P.Kind.RESPONSE, i, P.Opcode.PING, {"i": i, "pad": "x" * 50}) for i in range(6)]
    wire = bytearray(b"".join(frames))
    del wire[len(frames[0]) + 10]                      # a byte inside frame 1
    del wire[sum(map(len, frames[:3])) - 1]            # the closing END of frame 2 (frame 3 opens with one)
    out = P.FrameDecoder().feed(bytes(wire))
    got = [item.seq for item in out if isinstance(item, P.Frame)]
    assert got == [0, 2, 3, 4, 5]
