"""Benchmark (not a test): what a 12000 x 12000 PNG costs decoded (as the board did before issue 15) and refused.

    python3 bench/bench_big_image.py [--side 12000] [--max-pixels 4194304]

Builds a valid 1-bit grey PNG of side x side (``huge_png`` of ``tests/host_tools/device/test_hostile_host.py``, a few KB),
then (1) decodes it with ``cv2.imdecode`` + ``cvtColor`` to RGB as the old server did, reporting seconds and
the process's peak RSS (``ru_maxrss``) before and after, and (2) hands it to ``images.decode_image``, which reads
the header and refuses it.  Run (2) first in a fresh process if the peak matters to you: (1) raises it for good.
"""
from __future__ import annotations

import argparse
import resource
import struct
import sys
import time
import zlib

import numpy as np


def huge_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=12000)
    parser.add_argument("--max-pixels", type=int, default=4194304)
    args = parser.parse_args(argv)
    import cv2

    from wearface.firmware.errors import ImageError
    from wearface.firmware.images import decode_image

    data = huge_png(args.side, args.side)
    print(f"PNG {args.side}x{args.side}: {len(data):,} bytes")
    t = time.perf_counter()
    try:
        decode_image(data, args.max_pixels)
        print("images.decode_image: accepted (under the limit)")
    except ImageError as exc:
        print(f"images.decode_image: refused in {1e3 * (time.perf_counter() - t):.2f} ms ({exc.reason}), "
              f"peak RSS {peak_mb():.0f} MB")
    before = peak_mb()
    t = time.perf_counter()
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    print(f"cv2.imdecode + cvtColor (the old path): {time.perf_counter() - t:.1f} s, peak RSS {before:.0f} -> "
          f"{peak_mb():.0f} MB, image {rgb.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
