"""Benchmark (not a test): effective flash throughput over the serial protocol to the real firmware.

The virtual board's line is a pty, which moves bytes as fast as the CPU allows whatever baud it is set to, so
each rate is measured twice: on the bare pty, and through ``host_tools/device/fault_proxy.py`` pacing the bytes like an
8N1 line (10 bits per byte) at 115200 and 921600 baud, both directions.  Upload = FLASH_BEGIN + FLASH_CHUNKs
(stop-and-wait, one request in flight) into the firmware's slot file; ``--max-bytes`` caps the paced runs.

    python bench/bench_serial.py [--chunk-bytes 4096] [--max-bytes-115200 98304]
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from wearface.firmware import protocol as P
from wearface.host_tools.bundle.bundle_build import build_test_bundle
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import upload
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard


def upload_rate(link: Link, data: bytes, chunk_bytes: int, max_bytes: int, window: int) -> tuple[int, float]:
    """Upload the first ``max_bytes`` of ``data`` from offset 0 with ``flash.upload``; (bytes, seconds)."""
    part = data[:max_bytes]  # the board takes it as a whole image of that size (FLASH_END is not sent)
    link.request(P.Opcode.FLASH_BEGIN, {"size": len(part), "sha256": hashlib.sha256(part + b"x").digest()})
    t0 = time.perf_counter()
    upload(link, part, chunk_bytes=chunk_bytes, window=window)
    return len(part), time.perf_counter() - t0


def ping_ms(link: Link, n: int = 50) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        link.request(P.Opcode.PING)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunk-bytes", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 2], help="chunks in flight")
    ap.add_argument("--max-bytes-115200", type=int, default=96 * 1024)
    ap.add_argument("--max-bytes-921600", type=int, default=512 * 1024)
    args = ap.parse_args()
    data = build_test_bundle(seed=0)
    print(f"bundle: {len(data)} bytes; host: {sys.platform}")
    with tempfile.TemporaryDirectory() as tmp, VirtualBoard(Path(tmp) / "flash") as board:
        rows = []
        with Link(str(board.port), open_timeout_s=10) as link:
            link.request(P.Opcode.INFO)
            rows.append(("pty (no pacing)", None, "ping", ping_ms(link), None))
            for window in args.windows:
                for chunk in args.chunk_bytes:
                    n, s = upload_rate(link, data, chunk, len(data), window)
                    rows.append(("pty (no pacing)", None, (chunk, window), n / s, n))
        for baud, cap in ((115200, args.max_bytes_115200), (921600, args.max_bytes_921600)):
            with FaultProxy(board.port, Path(tmp) / f"paced{baud}", baud=baud) as _proxy, \
                    Link(str(Path(tmp) / f"paced{baud}"), baud=baud, open_timeout_s=10) as link:
                link.request(P.Opcode.INFO)
                rows.append((f"proxy 8N1 {baud}", baud, "ping", ping_ms(link, 20), None))
                for window in args.windows:
                    for chunk in args.chunk_bytes:
                        n, s = upload_rate(link, data, chunk, cap, window)
                        rows.append((f"proxy 8N1 {baud}", baud, (chunk, window), n / s, n))
    print(f"{'line':<20} {'chunk B':>8} {'window':>6} {'bytes':>8} {'KiB/s':>9} {'of line rate':>12}")
    for line, baud, chunk, value, n in rows:
        if chunk == "ping":
            print(f"{line:<20} {'PING':>8} {'':>6} {'':>8} {'':>9} {'':>12}  round trip median {value:.2f} ms")
            continue
        eff = f"{100 * value / (baud / 10):.0f} %" if baud else "-"
        print(f"{line:<20} {chunk[0]:>8} {chunk[1]:>6} {n:>8} {value / 1024:9.1f} {eff:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
