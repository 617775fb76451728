"""Benchmark (not a test): flash upload time and retries through a damaging line, against the clean line.

The real firmware on the virtual board, behind ``host_tools/device/fault_proxy.py`` pacing bytes like an 8N1 line
(``--baud``, both directions) and flipping one bit of a byte (``corrupt_p``) or dropping it (``drop_p``), seeded.
Uploads the first ``--bytes`` of the bundle (FLASH_BEGIN + FLASH_CHUNKs with the adaptive chunk size; the board
takes it as an image of that size, FLASH_END is not sent), after an INFO.  Reports per line and condition the
median time of ``--repeats``, its ratio to the clean line at that baud in the same run, requests, resends
(failed chunk tries + link resends), answers fetched in parts, and the chunk sizes seen.

    python bench/bench_flash_faults.py [--bundle models/default.wfb] [--bytes 16384] [--repeats 1]
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
from wearface.host_tools.device.fault_proxy import FaultProxy
from wearface.host_tools.device.flash import ChunkSizer, upload
from wearface.host_tools.device.link import Link
from wearface.host_tools.device.virtual_board import VirtualBoard

CONDITIONS = [("clean", {}), ("0.1% flips", {"corrupt_p": 0.001}), ("1% flips", {"corrupt_p": 0.01}),
              ("0.1% drops", {"drop_p": 0.001})]


def run_once(board, tmp: Path, baud: int, faults: dict, part: bytes, seed: int, chunk: int) -> dict:
    link_path = tmp / f"line{baud}-{seed}-{len(faults)}-{time.monotonic_ns()}"
    with FaultProxy(board.port, link_path, baud=baud, seed=seed, **faults), \
            Link(str(link_path), baud=baud, timeout_s=0.5, retries=10, open_timeout_s=10) as link:
        t0 = time.perf_counter()
        link.request(P.Opcode.INFO)
        sizer = ChunkSizer(chunk)
        # a fresh image each run (the sha differs per run), so nothing is resumed
        upload(link, part, chunk_bytes=chunk, window=2, sizer=sizer)
        elapsed = time.perf_counter() - t0
        again = link.request(P.Opcode.FLASH_BEGIN, {"size": len(part), "sha256": hashlib.sha256(part).digest()})
        assert again["offset"] == len(part), again
        return {"s": elapsed, "requests": link.stats.requests, "resends": link.stats.retries + sizer.failures,
                "parts": link.stats.answers_in_parts, "smallest": sizer.smallest, "final": sizer.size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="models/default.wfb")
    ap.add_argument("--bytes", type=int, default=16384, help="upload this many bytes of the bundle")
    ap.add_argument("--bauds", type=int, nargs="+", default=[115200, 921600])
    ap.add_argument("--chunk-bytes", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    data = Path(args.bundle).read_bytes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, VirtualBoard(Path(tmp) / "flash") as board:
        for baud in args.bauds:
            clean_s = None
            for name, faults in CONDITIONS:
                runs = []
                for r in range(args.repeats):
                    part = data[:args.bytes - 2] + bytes([r % 256, len(rows) % 256])  # distinct per run: no resume
                    runs.append(run_once(board, Path(tmp), baud, faults, part, seed=11 + r, chunk=args.chunk_bytes))
                med = statistics.median(x["s"] for x in runs)
                clean_s = med if name == "clean" else clean_s
                last = runs[-1]
                rows.append((baud, name, med, med / clean_s, last))
                print(f"{baud:>7} {name:<11} {med:7.2f} s  x{med / clean_s:5.1f}  {last}", flush=True)
    print(f"\n{args.bytes} bytes of {args.bundle}, {args.repeats} run(s) each, median")
    print("| baud | line | time (s) | × clean | requests | resends | answers in parts | chunk min → end (B) |")
    print("|---|---|---|---|---|---|---|---|")
    for baud, name, med, ratio, last in rows:
        print(f"| {baud} | {name} | {med:.2f} | {ratio:.1f} | {last['requests']} | {last['resends']} | "
              f"{last['parts']} | {last['smallest']} → {last['final']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
