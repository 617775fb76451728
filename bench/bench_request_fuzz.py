"""Benchmark (not a test): fuzzed requests against the real firmware on the virtual board; statuses and memory.

Starts ``python -m wearface.firmware`` on a pty (``VirtualBoard``), flashes a signed test bundle, then sends
``--requests`` requests of random opcodes (REBOOT excluded) whose arguments are random JSON values of every type,
including what ``json.dumps`` refuses to write (``1e99999``, ``-1e99999``, ``NaN``), huge integers, strings with
line separators, and images: random arrays of random sizes, PNG/JPEG headers declaring up to 20000 x 20000 pixels,
real small PNGs, garbage bytes.  A PING every 100 requests checks the board still answers.  The firmware
process's ``VmRSS`` and ``VmHWM`` (``/proc/PID/status``) are sampled every ``--every`` requests.

    python3 bench/bench_request_fuzz.py [--requests 5000] [--seed 0] [--every 500]

Prints the count of each answer status (INTERNAL_ERROR must be 0) and the firmware's RSS after the flash, at the
end and its peak, in MB.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

KEYS = ["name", "images", "size", "sha256", "offset", "data", "crc32", "n", "on", "n_frames", "x"]


def read_status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024.0


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def random_value(rnd: random.Random, depth: int = 0):
    kind = rnd.randrange(14 if depth < 2 else 11)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.randint(-10, 200)
    if kind == 3:
        return rnd.choice([2 ** 31, 2 ** 63, 10 ** 30, -(10 ** 30), 0, -1])
    if kind == 4:
        return rnd.choice([float("inf"), float("-inf"), float("nan"), 1e300, 0.5, 5.0])
    if kind == 5:
        return rnd.choice(["", "  bob  ", "a\u2028INFO forged", "x\u0085", "\u202eevil", "ok", "0" * 64, "é" * 300])
    if kind == 6:
        return rnd.randbytes(rnd.randrange(0, 300))
    if kind == 7:
        h, w = rnd.randrange(0, 300), rnd.randrange(0, 300)
        return np.random.default_rng(rnd.randrange(1 << 30)).integers(0, 256, (h, w, rnd.choice([1, 3, 4])),
                                                                       dtype=np.uint8)
    if kind == 8:
        return png_header(rnd.randrange(1, 20000), rnd.randrange(1, 20000))
    if kind == 9:
        return b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", rnd.randrange(65536), rnd.randrange(65536)) + b"\x03"
    if kind == 10:
        return np.zeros(rnd.randrange(0, 10), rnd.choice([np.float32, np.int32, np.uint8]))
    if kind == 11:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))]
    if kind == 12:
        return {rnd.choice(KEYS): random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 3))}
    return [random_value(rnd, depth + 1)]


def request_bytes(seq: int, code: int, payload: dict) -> bytes:
    from wearface.firmware import protocol as P

    blob = bytearray()
    tree = P._jsonable(payload, blob)
    text = json.dumps(tree, allow_nan=True).replace("Infinity", "1e99999").encode()
    body = P.HEADER.pack(P.PROTOCOL_VERSION, int(P.Kind.REQUEST), seq, code, 0, len(text)) + text + bytes(blob)
    body += struct.pack("<I", zlib.crc32(body))
    return b"\xc0" + P.slip_escape(body) + b"\xc0"


def exchange(line, decoder, data: bytes, seq: int, timeout_s: float = 60.0):
    from wearface.firmware import protocol as P

    line.write(data)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # read what is there (at least one byte, waiting up to the port's timeout): read(65536) would wait the whole
        # timeout on every answer shorter than 64 KiB, which made each request cost >= 50 ms of nothing
        for item in decoder.feed(line.read(max(line.in_waiting, 1))):
            if isinstance(item, P.Frame) and item.kind == P.Kind.RESPONSE and item.seq == seq:
                return item
    raise SystemExit(f"no answer to request seq {seq} in {timeout_s:.0f} s: the board hangs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=500)
    args = parser.parse_args(argv)

    import serial

    from wearface.firmware import protocol as P
    from wearface.host_tools.bundle.bundle_build import build_test_bundle
    from wearface.host_tools.device.flash import flash
    from wearface.host_tools.device.link import Link
    from wearface.host_tools.device.virtual_board import VirtualBoard

    rnd = random.Random(args.seed)
    codes = [int(o) for o in P.Opcode if o != P.Opcode.REBOOT]
    statuses: collections.Counter = collections.Counter()
    internal = []
    with tempfile.TemporaryDirectory() as tmp, VirtualBoard(Path(tmp) / "flash", restart=False) as board:
        with Link(str(board.port), open_timeout_s=20) as link:
            flash(link, build_test_bundle(seed=0))
        pid = board.proc.pid
        start_mb = read_status_mb(pid, "VmRSS")
        samples = []
        t0 = time.monotonic()
        with serial.Serial(str(board.port), timeout=0.05) as line:
            decoder = P.FrameDecoder()
            for i in range(args.requests):
                seq = i % 60000 + 1
                if i and i % args.every == 0:
                    samples.append((i, read_status_mb(pid, "VmRSS")))
                    print(f"{i} requests, RSS {samples[-1][1]:.0f} MB", file=sys.stderr, flush=True)
                if i % 100 == 99:
                    frame = exchange(line, decoder, request_bytes(seq, P.Opcode.PING, {}), seq)
                    assert frame.status == P.Status.OK, frame.payload
                    continue
                code = rnd.choice(codes)
                payload = {rnd.choice(KEYS): random_value(rnd) for _ in range(rnd.randrange(0, 4))}
                frame = exchange(line, decoder, request_bytes(seq, code, payload), seq)
                statuses[P.Status(frame.status).name] += 1
                if frame.status == P.Status.INTERNAL_ERROR:
                    internal.append((P.Opcode(code).name, frame.payload.get("error")))
        peak_mb = read_status_mb(pid, "VmHWM")
        end_mb = read_status_mb(pid, "VmRSS")
    print(f"{args.requests} requests (seed {args.seed}) in {time.monotonic() - t0:.0f} s")
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    print(f"INTERNAL_ERROR: {len(internal)} {internal[:5]}")
    print(f"firmware RSS after the flash {start_mb:.0f} MB, at the end {end_mb:.0f} MB, peak (VmHWM) {peak_mb:.0f} MB; "
          f"samples {[round(mb) for _, mb in samples]}")
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
