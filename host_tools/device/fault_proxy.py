"""A bad cable on purpose: a pty between host and board that drops, duplicates, corrupts, delays and paces bytes.

One job: a test aid (and the benchmark's baud-rate emulator).  The board side is opened by name (e.g. the virtual
board's ``DIR/tty``, reopened if the board restarts); the host side is a fresh pty behind a stable symlink
(``link_path``).  Each direction runs in its own thread: read up to ``piece_bytes``, apply the faults (each byte
independently: dropped with ``drop_p``, doubled with ``dup_p``, one random bit flipped with ``corrupt_p``), wait
``delay_s`` and, with ``baud`` set, the time the bytes need on a real 8N1 line (10 bits per byte — a pty moves
bytes as fast as the CPU does whatever baud it is set to), then write.  :meth:`FaultProxy.cut` makes the host's
side vanish for a while (an unplugged cable) and come back under the same link.

    python -m wearface.host_tools.device.fault_proxy BOARD_PORT LINK_PATH --baud 115200 --drop-p 0.001
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np

from .virtual_board import make_pty, point_link

BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


class _End:
    """One side of the proxy as a non-blocking fd that may vanish and come back."""

    def __init__(self):
        self.fd: int | None = None
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                try:
                    os.close(self.fd)
                except OSError:
                    pass
                self.fd = None


class FaultProxy:
    def __init__(self, upstream: str | Path, link_path: str | Path, *, drop_p: float = 0.0, dup_p: float = 0.0,
                 corrupt_p: float = 0.0, delay_s: float = 0.0, baud: int | None = None, seed: int = 0,
                 piece_bytes: int = 256):
        self.upstream = str(upstream)
        self.link_path = Path(link_path)
        self.drop_p, self.dup_p, self.corrupt_p = drop_p, dup_p, corrupt_p
        self.delay_s = delay_s
        self.baud = baud
        self.piece_bytes = piece_bytes
        self.rng = np.random.default_rng(seed)
        self.counters = {"bytes": 0, "dropped": 0, "duplicated": 0, "corrupted": 0, "cuts": 0}
        self._host = _End()
        self._board = _End()
        self._stop = threading.Event()
        self._cut = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rng_lock = threading.Lock()

    # -- ends

    def _open_host(self) -> None:
        master, slave_path = make_pty()
        os.set_blocking(master, False)
        with self._host.lock:
            self._host.fd = master
        point_link(self.link_path, slave_path)

    def _open_board(self) -> bool:
        try:
            fd = os.open(self.upstream, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            tty.setraw(fd)
        except OSError:
            pass
        with self._board.lock:
            self._board.fd = fd
        return True

    # -- faults

    def mangle(self, data: bytes) -> bytes:
        """Apply drop / duplicate / corrupt to each byte independently (counted in ``counters``)."""
        if not (self.drop_p or self.dup_p or self.corrupt_p):
            return data
        with self._rng_lock:
            arr = np.frombuffer(data, np.uint8).copy()
            n = len(arr)
            if self.corrupt_p:
                hit = self.rng.random(n) < self.corrupt_p
                arr[hit] ^= (1 << self.rng.integers(0, 8, int(hit.sum()))).astype(np.uint8)
                self.counters["corrupted"] += int(hit.sum())
            repeat = np.ones(n, np.int64)
            if self.drop_p:
                drop = self.rng.random(n) < self.drop_p
                repeat[drop] = 0
                self.counters["dropped"] += int(drop.sum())
            if self.dup_p:
                dup = (self.rng.random(n) < self.dup_p) & (repeat > 0)
                repeat[dup] = 2
                self.counters["duplicated"] += int(dup.sum())
        return np.repeat(arr, repeat).tobytes()

    # -- pumping

    def _pump(self, src: _End, dst: _End, from_board: bool) -> None:
        wire_free_at = time.monotonic()
        while not self._stop.is_set():
            fd = src.fd
            if fd is None:
                if from_board and not self._open_board():
                    time.sleep(0.05)
                elif not from_board:
                    time.sleep(0.02)
                continue
            try:
                readable, _, _ = select.select([fd], [], [], 0.05)
                if not readable:
                    continue
                data = os.read(fd, self.piece_bytes)
            except BlockingIOError:
                continue
            except (OSError, ValueError) as exc:
                if from_board:  # the board went away (restart): reopen its port by name
                    src.close()
                    time.sleep(0.05)
                elif getattr(exc, "errno", None) == errno.EIO:
                    time.sleep(0.02)  # no host has our pty open
                continue
            if not data:
                if from_board:
                    src.close()
                continue
            if self._cut.is_set():
                continue  # the cable is out: bytes go nowhere
            data = self.mangle(data)
            self.counters["bytes"] += len(data)
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.baud:
                now = time.monotonic()
                wire_free_at = max(wire_free_at, now) + len(data) * BITS_PER_BYTE / self.baud
                if wire_free_at > now:
                    time.sleep(wire_free_at - now)
            self._write(dst, data)

    def _write(self, dst: _End, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view and time.monotonic() < deadline and not self._stop.is_set():
            fd = dst.fd
            if fd is None:
                return
            try:
                _, writable, _ = select.select([], [fd], [], 0.05)
                if writable:
                    view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return  # that side is gone: a real line loses these bytes too

    # -- control

    def start(self) -> "FaultProxy":
        self._open_host()
        self._open_board()
        for from_board in (True, False):
            src, dst = (self._board, self._host) if from_board else (self._host, self._board)
            t = threading.Thread(target=self._pump, args=(src, dst, from_board), daemon=True,
                                 name=f"fault-proxy {'board->host' if from_board else 'host->board'}")
            t.start()
            self._threads.append(t)
        return self

    def unplug(self) -> None:
        """The host's side vanishes (its pty is closed: the host's reads fail as with a pulled USB cable)."""
        self._cut.set()
        try:
            self.link_path.unlink()  # as a vanished USB device: no name until it is plugged in again
        except FileNotFoundError:
            pass
        self._host.close()
        self.counters["cuts"] += 1

    def plug(self) -> None:
        """A new host-side pty appears under the same link path."""
        self._open_host()
        self._cut.clear()

    def cut(self, duration_s: float) -> None:
        """Unplug for ``duration_s``, then plug back in."""
        self.unplug()
        time.sleep(duration_s)
        self.plug()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        self._host.close()
        self._board.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wearface.host_tools.device.fault_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("upstream", help="the board's port (e.g. FLASHDIR/tty)")
    parser.add_argument("link_path", help="where to put the host-side symlink")
    parser.add_argument("--baud", type=int, default=None, help="pace bytes like an 8N1 line at this rate")
    parser.add_argument("--drop-p", type=float, default=0.0)
    parser.add_argument("--dup-p", type=float, default=0.0)
    parser.add_argument("--corrupt-p", type=float, default=0.0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    proxy = FaultProxy(args.upstream, args.link_path, drop_p=args.drop_p, dup_p=args.dup_p,
                       corrupt_p=args.corrupt_p, delay_s=args.delay_s, baud=args.baud).start()
    print(f"fault proxy: host side {args.link_path} -> board {args.upstream}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
