"""The virtual board: the real firmware in its own process, on a pseudo-terminal, with a folder as flash.

One job: play the board's hardware and init system.  Each boot makes a fresh pty with ``os.openpty()``, hands the
master side to ``python -m wearface.firmware --board boards/virtual.toml --flash DIR --port fd:N`` and closes its
own copy, so when the firmware process dies the pty vanishes exactly like a USB serial device that is unplugged.
The slave side (``/dev/pts/N``) is what the host opens with pyserial; its current name is kept behind the stable
symlink ``DIR/tty`` (replaced atomically at each boot), so a host that reconnects by that name finds the
restarted board.  Like ``Restart=always`` in the systemd unit, the supervisor starts the firmware again whenever
it exits (a ``reboot`` request, a crash, :meth:`VirtualBoard.kill`), until :meth:`VirtualBoard.stop`.

The firmware never outlives its supervisor: each boot gets ``--parent-pipe N``, the read end of a pipe whose
write end only this process holds, so when this process ends in any way (SIGKILL included) the firmware reads
EOF and stops (``firmware/lifeline.py``).  ``main`` (and ``wearface board emulate``) stop the board on SIGTERM,
SIGHUP and SIGINT (:func:`exit_on_signals`).

Run by hand::

    python -m wearface.host_tools.device.virtual_board --flash /tmp/vflash [--video clip.mp4]
    wearface monitor /tmp/vflash/tty
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from wearface.firmware.board import boards_dir

from ..errors import HostToolError

PORT_LINK_NAME = "tty"
CONSOLE_LOG_NAME = "console.log"
RESTART_DELAY_S = 0.3


def default_board_file() -> Path:
    return boards_dir() / "virtual.toml"


def make_pty() -> tuple[int, str]:
    """A raw pty pair: (master fd, slave path).  The slave is set raw (no echo, no CR/LF mangling) and closed."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


def point_link(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target``, atomically (a reader never sees it missing)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


class VirtualBoard:
    """Supervise the firmware process on a fresh pty per boot.  ``port`` is the stable path for the host.

    ``firmware_cmd`` replaces ``[python, -m, wearface.firmware]`` (tests use it); ``--board``, ``--flash`` and
    ``--port fd:N`` (and ``--video`` when given) are appended.
    """

    def __init__(self, flash_dir: str | Path, board_file: str | Path | None = None, video: str | None = None,
                 extra_args: list[str] | None = None, firmware_cmd: list[str] | None = None,
                 restart: bool = True, env: dict | None = None):
        self.flash_dir = Path(flash_dir).resolve()
        self.board_file = Path(board_file) if board_file else default_board_file()
        self.video = video
        self.extra_args = list(extra_args or [])
        self.firmware_cmd = firmware_cmd or [sys.executable, "-m", "wearface.firmware"]
        self.restart = restart
        self.env = env
        self.port = self.flash_dir / PORT_LINK_NAME
        self.console_log = self.flash_dir / CONSOLE_LOG_NAME
        self.boots = 0
        self.exit_codes: list[int] = []
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._booted = threading.Event()
        self._thread: threading.Thread | None = None
        #: (read end, write end) of the lifeline pipe while started; the firmware gets the read end
        self._lifeline: tuple[int, int] | None = None

    def command(self, port_spec: str) -> list[str]:
        cmd = self.firmware_cmd + ["--board", str(self.board_file), "--flash", str(self.flash_dir),
                                   "--port", port_spec]
        if self._lifeline is not None:
            cmd += ["--parent-pipe", str(self._lifeline[0])]
        if self.video:
            cmd += ["--video", str(self.video)]
        return cmd + self.extra_args

    def _boot_once(self) -> subprocess.Popen:
        master, slave_path = make_pty()
        try:
            with open(self.console_log, "ab") as console:
                lifeline = [self._lifeline[0]] if self._lifeline is not None else []
                proc = subprocess.Popen(self.command(f"fd:{master}"), pass_fds=[master, *lifeline],
                                        stdin=subprocess.DEVNULL,
                                        stdout=console, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        finally:
            os.close(master)  # the firmware holds the only master: its death removes the pty
        point_link(self.port, slave_path)
        self.boots += 1
        return proc

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self.proc = self._boot_once()
            except OSError as exc:
                print(f"virtual board: cannot start the firmware: {exc}", file=sys.stderr)
                self._stop.set()
                break
            self._booted.set()
            code = self.proc.wait()
            self.exit_codes.append(code)
            # the pty is gone; its /dev/pts number may be reused by any other program's pty at once, so the
            # stable name must not point there until the next boot repoints it
            try:
                self.port.unlink()
            except FileNotFoundError:
                pass
            if self._stop.is_set() or not self.restart:
                break
            time.sleep(RESTART_DELAY_S)

    def start(self) -> "VirtualBoard":
        """Start the supervisor and wait until the first boot has its pty; returns self."""
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        if self._lifeline is None:
            self._lifeline = os.pipe()  # both ends close-on-exec: only the firmware gets the read end
        self._thread = threading.Thread(target=self._supervise, name="virtual-board", daemon=True)
        self._thread.start()
        if not self._booted.wait(timeout=10.0):
            raise HostToolError(f"virtual board: the firmware did not start (see {self.console_log})")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Pull the plug on the running firmware (the supervisor boots it again)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def wait_for_boot(self, boots: int, timeout_s: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.boots >= boots and self.proc is not None and self.proc.poll() is None:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self._lifeline is not None:
            for fd in self._lifeline:
                os.close(fd)
            self._lifeline = None

    def console_tail(self, n_lines: int = 20) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-n_lines:])
        except OSError:
            return ""

    def __enter__(self) -> "VirtualBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def exit_on_signals(signals=(signal.SIGTERM, signal.SIGHUP)) -> None:
    """Make SIGTERM and SIGHUP end the main thread as Ctrl-C does: they raise ``SystemExit(128 + signal)``, so the
    caller's ``finally: board.stop()`` stops the firmware.  SIGINT raises KeyboardInterrupt even when this process
    was started with it ignored (a shell's background job, ``nohup ... &``): Python then leaves it ignored, and
    ``kill -INT`` would not stop the board.  Call from the main thread."""
    def _exit(signum, frame):
        raise SystemExit(128 + signum)
    for signum in signals:
        signal.signal(signum, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wearface.host_tools.device.virtual_board",
                                     description="Run the real firmware on a pty with a folder as flash.")
    parser.add_argument("--flash", required=True, help="folder that plays the board's flash")
    parser.add_argument("--board", default=None, help="board file (default boards/virtual.toml)")
    parser.add_argument("--video", default=None, help="video file the camera plays")
    args = parser.parse_args(argv)
    exit_on_signals()
    board = VirtualBoard(args.flash, args.board, args.video).start()
    print(f"virtual board running; serial port: {board.port}  (console: {board.console_log}); Ctrl-C stops it",
          flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
