"""Our int8 runtime beside LiteRT on the same weights (the same .tflite), one thread, one image at a time.

    python bench/bench_litert.py [--bundle models/default.wfb] [--repeats 50]

Without --bundle the nets are random (``bundle_build.random_qnet``): speed does not depend on the
weights' values.  LiteRT runs the .tflite written by ``host_tools/bundle/tflite_export.py`` with its
builtin optimized kernels (no delegate) and with its default XNNPACK delegate.
Prints a markdown table of median milliseconds per image.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def median_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    from wearface.host_tools.bundle import bundle_build
    from wearface.host_tools.bundle import tflite_export as T
    from wearface.kernels import nets, ptq
    from wearface.kernels.runtime import Int8Runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="a .wfb whose nets to time (default: random nets)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    if args.bundle:
        from wearface.firmware.bundle import read_bundle

        b = read_bundle(open(args.bundle, "rb").read(), args.bundle)
        qnets = {"align": b.align_net, "embed": b.embed_net}
    else:
        qnets = {"align": bundle_build.random_qnet(nets.ALIGN_NET, 0), "embed": bundle_build.random_qnet(nets.MODEL_A, 1)}
    from wearface.kernels.runtime import DEFAULT_BACKEND

    print(f"| net | MACs | ours (Int8Runtime, {DEFAULT_BACKEND}) ms | LiteRT builtin ms | LiteRT XNNPACK ms | max diff vs "
          "ours (builtin / XNNPACK) |")
    print("|---|---|---|---|---|---|")
    for role, qnet in qnets.items():
        image = ptq.random_images(qnet.spec.input_shape, 1, 0)[0]
        runtime = Int8Runtime(qnet)
        ours_ms = median_ms(lambda: runtime.run_int8(image), args.repeats)
        ours = runtime.run_int8(image).reshape(-1).astype(np.int32)
        data, _ = T.export_tflite(qnet)
        cells, diffs = [], []
        for resolver in ("builtin", "default"):
            interp = T.load_interpreter(data, resolver, threads=1)
            if interp is None:
                cells.append("not installed")
                diffs.append("-")
                continue
            cells.append(f"{median_ms(lambda: T.run_interpreter(interp, image), args.repeats):.3f}")
            diffs.append(str(int(np.max(np.abs(T.run_interpreter(interp, image).astype(np.int32) - ours)))))
        macs = nets.totals(qnet.spec)[0]
        print(f"| {role} ({qnet.spec.name}) | {macs / 1e6:.1f}M | {ours_ms:.3f} | {cells[0]} | {cells[1]} | "
              f"{diffs[0]} / {diffs[1]} LSB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
