"""BoardApp as the server sees it: info, flash requests, reboot, trial rollback; the firmware entry point."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wearface.firmware.app import BoardApp
from wearface.firmware.errors import BundleError, SlotError

from .conftest import REPO, flash_app, make_board, signed_bundle


def test_info_is_json_and_flash_is_resumable_through_the_app(tmp_path):
    app = BoardApp(make_board(tmp_path), frames=[])
    info = app.info()
    json.dumps(info)
    assert info["state"] == "recovery" and info["active_slot"] is None and info["board"] == "virtual"
    data = signed_bundle(1)
    digest = hashlib.sha256(data).digest()
    assert app.flash_begin(len(data), digest) == {"slot": "A", "offset": 0, "size": len(data)}
    assert app.flash_chunk(0, data[:4096]) == 4096
    assert app.flash_begin(len(data), digest)["offset"] == 4096  # the host reconnected: resume
    with pytest.raises(SlotError) as err:
        app.flash_chunk(0, data[:4096])
    assert err.value.reason == "offset_mismatch" and err.value.offset == 4096
    app.flash_chunk(4096, data[4096:])
    result = app.flash_end()
    assert result["slot"] == "A" and result["state"] == "pending"
    app.reboot()
    info = app.info()
    assert (info["state"], info["active_slot"], info["pending_slot"], info["trial"]) == ("running", "A", "A", True)
    assert info["kernels_path"] and info["model_version"] == "test-1-r0" and info["embedding_space"]
    json.dumps(app.stats())
    app.close()


def test_trial_slot_that_never_runs_healthily_rolls_back_across_reboots(tmp_path):
    board = make_board(tmp_path)
    app = BoardApp(board, frames=lambda: iter(()))  # a camera that gives nothing: no healthy frames
    flash_app(app, signed_bundle(1))
    app.reboot()
    app.booter.confirm(30)
    flash_app(app, signed_bundle(2))
    events = []
    app.subscribe(events.append)
    for _ in range(board.boot.trial_boots):
        app.reboot()
        assert app.info()["active_slot"] == "B" and app.info()["trial"]
    app.reboot()
    info = app.info()
    assert (info["active_slot"], info["trial"], info["slots"]["B"]["state"]) == ("A", False, "bad")
    assert info["slots"]["B"]["bad_reason"] == "trial_boots_exhausted"
    assert [e for e in events if e["event"] == "boot.rollback"]
    assert "boot.rollback from_slot=B to_slot=A" in "\n".join(app.log_tail(50))
    with pytest.raises(BundleError):  # a truncated image is refused and never becomes pending
        flash_app(app, signed_bundle(3)[:-100])
    assert app.info()["pending_slot"] is None
    app.close()


def _firmware(*args, **kw):
    return subprocess.run([sys.executable, "-m", "wearface.firmware", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, **kw)


def test_entry_point_reports_a_bad_board_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncompatible = "y"\nmodel = "A"\nframe_budget_ms = "fast"\n')
    proc = _firmware("--board", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"wearface firmware: error: {bad}: frame_budget_ms: expected a number, "
                                   f"found string 'fast'")
    missing = _firmware("--board", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "no such board file" in missing.stderr


def test_entry_point_starts_on_a_pty_and_stops_on_sigterm(tmp_path):
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "wearface.firmware", "--board", str(REPO / "boards/virtual.toml"),
                                 "--flash", str(tmp_path / "flash"), "--port", f"fd:{master}"],
                                pass_fds=[master], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        line = proc.stdout.readline()
        assert "state recovery" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        os.close(master)
        os.close(slave)
    assert "boot.recovery" in (tmp_path / "flash" / "firmware.log").read_text()


def test_a_broken_detector_file_stops_at_recovery_and_fails_no_slot(tmp_path, monkeypatch):
    from wearface.firmware import blazeface

    board = make_board(tmp_path)
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    assert app.info()["state"] == "running"
    app.booter.confirm(30)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "face_detection_full_range.tflite").write_bytes(b"not a net" * 100)
    monkeypatch.setattr(blazeface, "DETECTORS_DIR", str(tmp_path / "nets"))  # a damaged firmware install
    events = []
    app.subscribe(events.append)
    app.reboot()
    info = app.info()
    assert info["state"] == "recovery"
    assert info["slots"]["A"]["state"] != "bad"  # the bundle is not to blame: no rollback, nothing marked bad
    (recovery,) = [e for e in events if e["event"] == "boot.recovery"]
    assert "face detector could not be loaded" in recovery["reason"] and "face_detection_full_range" in recovery["reason"]
    monkeypatch.undo()  # the install repaired: the same slot runs again
    app.reboot()
    assert (app.info()["state"], app.info()["active_slot"]) == ("running", "A")
    app.close()
