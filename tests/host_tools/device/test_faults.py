"""Faults on the line: a proxy that drops, duplicates, corrupts and cuts, between the host and a board process."""
from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import pytest

from wearface.firmware import protocol as P
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import flash, upload
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard
from wearface.host_tools.errors import LinkError

FAKE_FIRMWARE = [sys.executable, str(Path(__file__).with_name("fake_firmware.py"))]


@pytest.fixture(scope="module")
def bundle_bytes():
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    return build_test_bundle(seed=3)


@pytest.fixture
def fake_board(tmp_path):
    with VirtualBoard(tmp_path / "flash", firmware_cmd=FAKE_FIRMWARE) as board:
        yield board


@pytest.mark.parametrize("window", [1, 3])
def test_upload_completes_through_drops_duplicates_and_corruption(fake_board, tmp_path, window):
    # 1 byte in 6 700 damaged: about one 1 KiB chunk in seven needs a resend
    data = bytes(range(256)) * 400
    with FaultProxy(fake_board.port, tmp_path / "noisy", drop_p=5e-5, dup_p=5e-5, corrupt_p=5e-5, seed=1) as proxy:
        with Link(str(tmp_path / "noisy"), timeout_s=0.4, retries=10) as link:
            upload(link, data, chunk_bytes=1024, window=window)
            end = link.request(P.Opcode.FLASH_END)  # the fake board checks the SHA-256 of what it got
    assert end["pending"] is True
    assert proxy.counters["dropped"] and proxy.counters["corrupted"] and proxy.counters["duplicated"]
    # recovered from damage: resent requests, or chunks the flash retried after the board reported them damaged
    assert link.stats.retries + link.stats.bad_frames_reported + link.stats.bad_frames_rx > 0


def test_short_cut_mid_flash_is_ridden_out(fake_board, tmp_path, bundle_bytes):
    with FaultProxy(fake_board.port, tmp_path / "cable") as proxy:
        with Link(str(tmp_path / "cable"), timeout_s=0.5, retries=6) as link:
            started = []

            def progress(done, total):
                if done > total // 3 and not started:
                    started.append(done)
                    threading.Thread(target=proxy.cut, args=(0.8,), daemon=True).start()
            result = flash(link, bundle_bytes, reboot=False, progress=progress)
    assert proxy.counters["cuts"] == 1 and link.stats.reconnects >= 1
    assert result.sha256 == hashlib.sha256(bundle_bytes).hexdigest()


def test_long_cut_fails_clearly_then_flash_resumes(fake_board, tmp_path, bundle_bytes):
    with FaultProxy(fake_board.port, tmp_path / "cable") as proxy:
        with Link(str(tmp_path / "cable"), timeout_s=0.3, retries=1) as link:
            cut_at = {}

            def progress(done, total):
                if done > total // 2 and not cut_at:
                    cut_at["offset"] = done
                    proxy.unplug()  # and it stays out until the upload gives up
            with pytest.raises(LinkError, match="run the same flash command again to resume"):
                upload(link, bundle_bytes, progress=progress, resume_timeout_s=0.5)
        proxy.plug()
        with Link(str(tmp_path / "cable"), timeout_s=0.5) as link:
            result = flash(link, bundle_bytes, reboot=False)
    assert result.resumed_from >= cut_at["offset"] > 0


def test_monitor_link_reconnects_after_the_board_is_killed(fake_board):
    ups = []
    with Link(str(fake_board.port), timeout_s=0.5, on_link=ups.append) as link:
        assert link.next_event(timeout_s=3.0) is not None
        fake_board.kill()
        assert fake_board.wait_for_boot(2)
        while link.next_event(timeout_s=0.01):
            pass
        ev = link.next_event(timeout_s=5.0)
        assert ev is not None and ev.payload["event"] == "stats"
    assert ups[:2] == [False, True]
