"""``python -m wearface.host_tools.device.virtual_board`` never leaves its firmware behind: SIGTERM, SIGINT and SIGHUP stop
the board, and when the supervisor is killed outright (SIGKILL) the firmware sees its parent pipe close and exits."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WAIT_S = 60.0


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {WAIT_S:.0f} s: {what}")
        time.sleep(0.1)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# "SIGINT-after-ignored": started as a shell's background job is (`nohup ... &`: SIGINT ignored, and Python keeps
# an inherited SIG_IGN), a `kill -INT` must stop it all the same
@pytest.mark.parametrize("signum, started_ignoring_int",
                         [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGHUP, False),
                          (signal.SIGKILL, False), (signal.SIGINT, True)],
                         ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL", "SIGINT-after-ignored"])
def test_the_firmware_stops_with_the_virtual_board(tmp_path, signum, started_ignoring_int):
    flash_dir = tmp_path / "flash"
    supervisor = subprocess.Popen([sys.executable, "-m", "wearface.host_tools.device.virtual_board", "--flash",
                                   str(flash_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=_ignore_sigint if started_ignoring_int else None)
    firmware: list[int] = []
    try:
        wait_for(lambda: (flash_dir / "tty").is_symlink() and bool(firmware.extend(children_of(supervisor.pid))
                                                                 or firmware), "the firmware to start")
        (pid,) = firmware
        wait_for(lambda: "state" in (flash_dir / "console.log").read_text(errors="replace"),
                 "the firmware to finish booting")
        os.kill(supervisor.pid, signum)
        supervisor.wait(WAIT_S)
        wait_for(lambda: not alive(pid), f"firmware pid {pid} to exit after the supervisor got "
                                         f"{signal.Signals(signum).name}")
    finally:
        for pid in [supervisor.pid, *firmware]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        supervisor.wait(5)
