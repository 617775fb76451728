"""Host-side pieces without the real firmware: monitor formatting/filtering/recording, plot, CLI exit codes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from wearface.firmware import protocol as P
from wearface.host_tools import cli
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.monitor import EventFilter, EventFormatter, Recorder
from wearface.host_tools.device.plot import compared_with_theta, load_recording, pca_2d, plot_recording
from wearface.host_tools.device.virtual_board import VirtualBoard
from wearface.host_tools.errors import LinkError

FAKE_FIRMWARE = [sys.executable, str(Path(__file__).with_name("fake_firmware.py"))]


def test_formatter_and_filter():
    fmt = EventFormatter(colour=False)
    line = fmt.line({"event": "person.recognised", "t": 0.0, "track": 3, "name": "ada", "distance": 0.41234,
                     "margin": 0.2, "next_name": "bob"})
    assert "track 3: ada" in line and "distance 0.412" in line and "(next bob)" in line and "score" not in line
    unknown = fmt.line({"event": "person.unknown", "t": 0.0, "track": 4, "nearest": "ada", "distance": 0.8,
                        "score": 1.0625})  # a bundle with a cohort: θ bounds the score
    assert "nearest ada at 0.800" in unknown and "score 1.062" in unknown
    assert "\033[" in EventFormatter(colour=True).line({"event": "boot.rollback", "t": 0.0})
    stats = fmt.line({"event": "stats", "t": 0.0, "fps": 12.5, "latency_ms": {"detect": 3.0, "embed": 9.25}})
    assert "fps 12.5" in stats and "detect 3.0" in stats and "embed 9.2" in stats and "still" not in stats
    assert "still 7" in fmt.line({"event": "stats", "t": 0.0, "fps": 30.0, "tracks_followed": 3, "still_frames": 7})
    f = EventFilter(only=["person.*"], exclude=["person.left"], grep="ada")
    assert f.wants("person.recognised", "ada") and not f.wants("person.left", "ada")
    assert not f.wants("stats", "ada") and not f.wants("person.unknown", "bob")


def test_recording_round_trip_and_plot(tmp_path):
    rec = Recorder()
    rec.threshold = 1.1
    rng = np.random.default_rng(0)
    for i in range(12):
        v = rng.normal(size=8).astype(np.float32)
        rec.on_event({"event": "debug.embedding", "t": 100.0 + i, "track": i % 2, "frame": i,
                      "embedding": v / np.linalg.norm(v), "name": "ada" if i % 2 else None, "distance": 0.5 + i / 20})
    rec.on_event({"event": "stats", "t": 101.0, "fps": 10.0, "latency_ms": {"frame": 50.0, "detect": 20.0}})
    rec.on_event({"event": "person.unknown", "t": 102.0, "track": 0})
    path = tmp_path / "rec.npz"
    assert rec.save(str(path)) == 12
    data = load_recording(path)
    assert data["embedding"].shape == (12, 8) and data["name"][1] == "ada" and data["name"][0] == ""
    assert float(data["threshold"]) == pytest.approx(1.1) and data["latency_frame_ms"][0] == 50.0
    assert data["decision_name"].tolist() == [""]
    png = plot_recording(path, tmp_path / "rec.png")
    assert png.stat().st_size > 10_000
    assert pca_2d(np.eye(3)).shape == (3, 2)
    assert compared_with_theta(data)[0] is data["distance"]  # no rule recorded: θ is a distance


def test_a_cohort_recording_plots_the_score_theta_bounds(tmp_path):
    rec = Recorder()
    rec.threshold, rec.threshold_metric = 0.73, "l2_cohort"
    for i in range(4):
        rec.on_event({"event": "debug.embedding", "t": 100.0 + i, "track": 1, "frame": i, "embedding": np.eye(4)[i],
                      "name": None, "distance": 0.8, "score": 1.1 + i / 10})
    rec.on_event({"event": "debug.embedding", "t": 105.0, "track": 1, "frame": 5, "embedding": np.eye(4)[0],
                  "name": None, "distance": 0.8})  # a board before 0.2.3 sent no score
    path = tmp_path / "rec.npz"
    assert rec.save(str(path)) == 5
    data = load_recording(path)
    values, label, _ = compared_with_theta(data)
    assert values[:4] == pytest.approx([1.1, 1.2, 1.3, 1.4]) and np.isnan(values[4]) and "score" in label
    assert plot_recording(path, tmp_path / "rec.png").stat().st_size > 10_000


def test_loop_url_is_opened_and_an_unanswered_request_fails_cleanly():
    # loop:// echoes our own request: the link ignores it (not a response) and gives up with a LinkError
    with Link("loop://", timeout_s=0.05, retries=1) as link:
        with pytest.raises(LinkError, match="no answer to PING after 2 attempts"):
            link.request(P.Opcode.PING)


def test_missing_port_is_a_link_error():
    with pytest.raises(LinkError, match="cannot open"):
        Link("/dev/does-not-exist", open_timeout_s=0.2).open()


@pytest.fixture
def fake_board(tmp_path):
    with VirtualBoard(tmp_path / "flash", firmware_cmd=FAKE_FIRMWARE) as board:
        yield board


def test_cli_exit_codes(fake_board, tmp_path, capsys):
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    port = str(fake_board.port)
    unsigned = tmp_path / "unsigned.wfb"
    unsigned.write_bytes(build_test_bundle(key_path=None))
    assert cli.main(["flash", port, str(unsigned), "--no-progress"]) == 20 + 6  # BAD_SIGNATURE, found here
    assert "unsigned" in capsys.readouterr().err
    assert cli.main(["flash", port, str(tmp_path / "missing.wfb")]) == 3
    good = tmp_path / "good.wfb"
    good.write_bytes(build_test_bundle())
    assert cli.main(["flash", port, str(good), "--no-progress", "--no-reboot"]) == 0
    assert "pending (not rebooted)" in capsys.readouterr().out
    import cv2

    cv2.imwrite(str(tmp_path / "dark.png"), np.zeros((20, 20, 3), np.uint8))
    assert cli.main(["enroll", port, "--name", "ada", str(tmp_path / "dark.png")]) == 12
    cv2.imwrite(str(tmp_path / "face.png"), np.full((20, 20, 3), 200, np.uint8))
    assert cli.main(["enroll", port, "--name", "ada", str(tmp_path / "face.png")]) == 0
    assert cli.main(["gallery", "list", port]) == 0
    assert "ada" in capsys.readouterr().out
    assert cli.main(["gallery", "delete", port, "bob"]) == 14
    assert cli.main(["info", port]) == 0
    assert cli.main(["monitor", port, "--duration-s", "0.5", "--log-lines", "2", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "--- board fake" in out and "log | line 0" in out


class _ScriptedLink:
    """Answers INFO from a script of slot states (what a board reports while it boots the new slot)."""

    url = "scripted"

    def __init__(self, infos):
        self.infos = list(infos)

    def request(self, opcode, payload=None, timeout_s=None, retries=None):
        assert opcode == P.Opcode.INFO
        return self.infos.pop(0) if len(self.infos) > 1 else self.infos[0]


def _info(active, pending, confirmed, trial, state="running", bad=None):
    return {"state": state, "active_slot": active, "pending_slot": pending, "confirmed_slot": confirmed,
            "trial": trial, "model_version": "m", "slots": {"B": {"bad_reason": bad}}}


def test_verdict_confirmed_rollback_and_timeout(monkeypatch):
    from wearface.host_tools.device import flash as F
    from wearface.host_tools.errors import ConfirmTimeoutError, RollbackError

    monkeypatch.setattr(F, "INFO_POLL_S", 0.0)
    ok = F.wait_for_verdict(_ScriptedLink([_info("B", None, "A", True), _info("B", None, "B", False)]), "B", 5.0)
    assert ok["confirmed_slot"] == "B"
    with pytest.raises(RollbackError, match="trial_boots_exhausted"):
        F.wait_for_verdict(_ScriptedLink([_info("B", None, "A", True),
                                          _info("A", None, "A", False, bad="trial_boots_exhausted")]), "B", 5.0)
    with pytest.raises(ConfirmTimeoutError, match="did not confirm slot 'B'"):
        F.wait_for_verdict(_ScriptedLink([_info("B", None, "A", True)]), "B", 0.2)


def test_socket_url_reaches_the_board(fake_board):
    """``socket://``: a TCP bridge to the board's pty (like ser2net), spoken to by pyserial's URL handler."""
    import os
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    fd = os.open(str(fake_board.port), os.O_RDWR | os.O_NOCTTY)

    def bridge():
        conn, _ = server.accept()
        conn.settimeout(0.05)
        os.set_blocking(fd, False)
        while True:
            try:
                data = conn.recv(65536)
                if not data:
                    return
                os.write(fd, data)
            except (TimeoutError, socket.timeout):
                pass
            except OSError:
                return
            try:
                conn.sendall(os.read(fd, 65536))
            except BlockingIOError:
                pass
            except OSError:
                return
    threading.Thread(target=bridge, daemon=True).start()
    try:
        with Link(f"socket://127.0.0.1:{port}", timeout_s=1.0) as link:
            assert link.request(P.Opcode.INFO)["board"] == "fake"
    finally:
        server.close()
        os.close(fd)


def test_monitor_on_a_terminal_quits_with_ctrl_right_bracket(fake_board):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "wearface.host_tools", "monitor", str(fake_board.port),
                                           "--color", "always"], timeout=20, encoding="utf-8")
    child.expect("Ctrl-\\] quits")
    child.expect("stats")
    child.send("\x1d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_explain_puts_theta_where_the_rule_puts_it_among_distance_bars():
    from wearface.host_tools.device.explain import render_panel, theta_line

    plain = {"threshold": 0.5, "distance": 0.4, "score": 0.4}
    assert theta_line(plain) == (0.5, "theta 0.500")
    cohort = {"threshold": 0.7, "distance": 0.8, "score": 1.6}  # this probe's cohort distance: 0.5
    theta, label = theta_line(cohort)
    assert theta == pytest.approx(0.35) and "cohort 0.500" in label
    # the board's own figure (firmware that sends it) is drawn as sent
    assert theta_line(dict(cohort, distance_threshold=0.42))[0] == pytest.approx(0.42)
    record = dict(cohort, crop=np.zeros((112, 112, 3), np.uint8), view=np.zeros((50, 50, 3), np.uint8),
                  nearest=[{"name": "ada", "distance": 0.8}], frame=1, track=2, name=None)
    assert render_panel(record).ndim == 3
