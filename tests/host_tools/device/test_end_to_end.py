"""End to end on a real pty with the real firmware process (``python -m wearface.firmware``) and the host tools."""
from __future__ import annotations

import io
import threading
import time

import cv2
import numpy as np
import pytest

from wearface.firmware import protocol as P
from wearface.firmware.errors import BundleError
from wearface.host_tools.device.enroll import enroll_photos
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import flash, upload
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.monitor import Monitor
from wearface.host_tools.device.virtual_board import VirtualBoard
from wearface.host_tools.errors import LinkError, NoFaceError, SeveralFacesError, UnknownNameError


@pytest.fixture(scope="module")
def bundles():
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    return [build_test_bundle(seed=s, model_version=f"test-{s}") for s in (0, 1)]


@pytest.fixture
def board(tmp_path):
    with VirtualBoard(tmp_path / "flash") as vb:
        yield vb


def _info(link):
    return link.request(P.Opcode.INFO)


def test_flash_enroll_gallery_on_the_real_firmware(board, bundles, tmp_path):
    from wearface.firmware.scene import grace_hopper_path

    photo = grace_hopper_path()
    with Link(str(board.port), open_timeout_s=10) as link:
        assert _info(link)["state"] == "recovery"
        result = flash(link, bundles[0])
        assert result.confirmed and _info(link)["confirmed_slot"] == result.slot
        out = enroll_photos(link, "grace", [photo])
        assert out.added == 1 and out.faces[0]["mode"] == "detected"
        face = cv2.imread(str(photo))
        cv2.imwrite(str(tmp_path / "two.jpg"), np.hstack([face, face]))
        with pytest.raises(SeveralFacesError, match="two.jpg"):
            enroll_photos(link, "twins", [tmp_path / "two.jpg"])
        cv2.imwrite(str(tmp_path / "wall.png"), np.full((300, 400, 3), 128, np.uint8))
        with pytest.raises(NoFaceError, match="no face"):
            enroll_photos(link, "wall", [tmp_path / "wall.png"])
        people = link.request(P.Opcode.GALLERY_LIST)["people"]
        assert [p["name"] for p in people] == ["grace"]
        with pytest.raises(UnknownNameError):
            link.request(P.Opcode.GALLERY_DELETE, {"name": "ada"})
        assert link.request(P.Opcode.GALLERY_DELETE, {"name": "grace"})["deleted"] == 1


@pytest.mark.slow
def test_corrupt_bundle_never_boots_and_cut_flash_resumes(board, bundles, tmp_path):
    with FaultProxy(board.port, tmp_path / "cable") as proxy:
        with Link(str(tmp_path / "cable"), timeout_s=0.5, retries=2, open_timeout_s=10) as link:
            first = flash(link, bundles[0])
            bad = bytearray(bundles[1])
            bad[len(bad) // 2] ^= 0x01
            with pytest.raises(BundleError):  # the host refuses to send it at all
                flash(link, bytes(bad), reboot=False)
            upload(link, bytes(bad))          # sent anyway, the board refuses it
            end = link.request_frame(P.Opcode.FLASH_END, timeout_s=10)
            assert end.status == P.Status.FLASH_REJECTED, end.payload
            link.request(P.Opcode.REBOOT, timeout_s=20)
            info = _info(link)
            assert info["active_slot"] == first.slot and info["state"] == "running"

            def unplug_halfway(done, total):
                if done > total // 2 and not proxy.counters["cuts"]:
                    proxy.unplug()
            with pytest.raises(LinkError, match="resume"):
                upload(link, bundles[1], progress=unplug_halfway, resume_timeout_s=0.5)
            proxy.plug()
            info = _info(link)
            assert info["active_slot"] == first.slot and info["state"] == "running"  # old slot still runs
            second = flash(link, bundles[1])
    assert second.resumed_from > 0 and second.confirmed and second.slot != first.slot


def test_monitor_reconnects_when_the_board_is_killed_and_restarted(board, bundles):
    with Link(str(board.port), open_timeout_s=10) as link:
        flash(link, bundles[0])
    seen = []
    out = io.StringIO()
    mon = Monitor(str(board.port), out=out, on_event=seen.append, log_lines=0)
    mon.start()
    thread = threading.Thread(target=mon.watch, args=(60.0,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not any(e.get("event") == "stats" for e in seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        board.kill()
        assert board.wait_for_boot(2)
        n_before = len(seen)
        while not any(e.get("event") == "stats" for e in seen[n_before:]) and time.monotonic() < deadline + 20:
            time.sleep(0.1)
    finally:
        mon.stop_event.set()
        thread.join(timeout=5)
        mon.close()
    assert any(e.get("event") == "stats" for e in seen[n_before:]), out.getvalue()
    text = out.getvalue()
    assert "link.lost" in text and "link.up" in text


def test_board_killed_mid_flash_restarts_and_the_upload_resumes(board, bundles):
    killed = []

    def kill_halfway(done, total):
        if done > total // 2 and not killed:
            killed.append(done)
            board.kill()  # power cut: the supervisor boots the firmware again on a fresh pty
    with Link(str(board.port), timeout_s=0.5, retries=2, open_timeout_s=10) as link:
        result = flash(link, bundles[0], progress=kill_halfway)
        assert link.stats.reconnects >= 1
        sent_bytes = link.stats.bytes_tx
    assert board.boots >= 2 and result.confirmed
    # the restarted board kept its fsynced offset: the upload went on from there instead of starting over
    assert sent_bytes < 1.3 * len(bundles[0])


def test_explain_panels_come_over_the_real_serial_path_and_only_inside_the_session(board, bundles, tmp_path):
    from wearface.firmware.scene import grace_hopper_path
    from wearface.host_tools.device.explain import ExplainWriter, contact_sheet
    from wearface.host_tools.errors import BoardError

    with Link(str(board.port), open_timeout_s=10) as link:
        flash(link, bundles[0])
        enroll_photos(link, "grace", [grace_hopper_path()])
        with pytest.raises(BoardError, match="explain session"):  # crops are biometric: not outside the session
            link.request(P.Opcode.GALLERY_CROPS, {"name": "grace"})
    seen = []
    writer = ExplainWriter(tmp_path / "explain")
    mon = Monitor(str(board.port), out=io.StringIO(), on_event=seen.append, log_lines=0, explainer=writer)
    mon.start()
    thread = threading.Thread(target=mon.watch, args=(60.0,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while writer.written < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        mon.stop_event.set()
        thread.join(timeout=5)
        mon.close()
    records = [e for e in seen if e.get("event") == "debug.explain"]
    assert records and writer.written >= 1
    r = records[0]
    assert r["crop"].shape == (112, 112, 3) and r["crop"].dtype == np.uint8 and r["view"].shape == (50, 50, 3)
    assert r["nearest"][0]["name"] == "grace" and r["threshold"] > 0
    entry = __import__("json").loads((tmp_path / "explain" / "index.jsonl").read_text().splitlines()[0])
    panel = cv2.imread(str(tmp_path / "explain" / entry["file"]))
    first = next(e for e in records if e["frame"] == entry["frame"] and e["track"] == entry["track"])
    crop_bgr = cv2.resize(first["crop"], (224, 224), interpolation=cv2.INTER_NEAREST)[:, :, ::-1]
    assert np.array_equal(panel[20:244, 224:448], crop_bgr)  # the panel holds the crop's own pixels
    assert "panels" in contact_sheet(tmp_path / "explain", tmp_path / "sheet.png")
    with Link(str(board.port), open_timeout_s=10) as link:  # the monitor closed its session: explain is off
        assert link.request(P.Opcode.INFO)["debug_embeddings"] is False
        with pytest.raises(BoardError, match="explain session"):
            link.request(P.Opcode.GALLERY_CROPS, {"name": "grace"})


def test_a_model_update_keeps_enrolled_people_without_re_enrolment(board, bundles, capsys):
    from wearface.firmware.scene import grace_hopper_path
    from wearface.host_tools.cli import main

    with Link(str(board.port), open_timeout_s=10) as link:
        flash(link, bundles[0])
        old_space = _info(link)["embedding_space"]
        enroll_photos(link, "grace", [grace_hopper_path()])
        result = flash(link, bundles[1])  # another embedding space; flash waits for the trial boot's confirmation
        assert result.confirmed and _info(link)["embedding_space"] != old_space
        new_space = _info(link)["embedding_space"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            grace = link.request(P.Opcode.GALLERY_LIST)["people"][0]
            if grace["usable"]:
                break
            time.sleep(0.2)
    assert grace["usable"] == 1 and grace["needs_reenrolment"] is False
    assert grace["spaces"] == {old_space: 1, new_space: 1}  # the old space stays until confirmed at 3 boots
    assert main(["gallery", "list", str(board.port)]) == 0
    assert "1 usable / 2 embeddings, 1 crops kept" in capsys.readouterr().out
