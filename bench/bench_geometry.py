"""Geometry benchmark (not a test): detection and alignment latency on one core.

    python3 bench/bench_geometry.py [--checkpoint models/checkpoints/align.pt] [--data ../shared/data] [--runs 50]

One thread everywhere (``cv2.setNumThreads(1)``, NUMBA/OpenBLAS/OMP 1 thread).  Detection is per
frame: synthetic 640x480 scenes with 1 and 4 copies of matplotlib's Grace Hopper portrait (faces
of ~90-180 px), and the shared video clip (640x360) when ``--data`` has it; default settings and
``downscale=2``.  Alignment is per face, split into its steps: ``face_window``,
``alignment_input`` (50x50), the int8 alignment net (``kernels.runtime.Int8Runtime``, weights
from ``--checkpoint`` folded and quantized by ``kernels.ptq`` on 16 alignment inputs of the
scenes; random weights without a checkpoint: speed does not depend on the values),
``apply_correction`` and ``embedding_input`` (112x112).  Medians over ``--runs`` repetitions.
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from wearface.firmware import align, detect  # noqa: E402
from wearface.kernels import nets, ptq  # noqa: E402
from wearface.kernels.runtime import Int8Runtime  # noqa: E402


def hopper() -> np.ndarray:
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)


def scene(n_faces: int) -> np.ndarray:
    """640x480 grey-gradient frame with ``n_faces`` copies of the portrait."""
    img = hopper()
    frame = np.tile(np.linspace(60, 190, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    spots = [(20, 20, 0.6), (360, 30, 0.4), (40, 300, 0.3), (400, 280, 0.33)][:n_faces]
    for x, y, s in spots:
        small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        frame[y:y + h, x:x + w] = small[: 480 - y, : 640 - x]
    return frame


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def float_weights(checkpoint: str | None) -> tuple[dict, str]:
    if checkpoint:
        from wearface.host_tools.train.torch_nets import export_float_weights
        from wearface.host_tools.train.train_align import load_align_model

        model, _ = load_align_model(checkpoint)
        return export_float_weights(model), checkpoint
    rng = np.random.default_rng(0)
    weights = {}
    for row in nets.iter_counts(nets.ALIGN_NET):
        layer = row.layer
        if isinstance(layer, nets.Conv):
            fan_in = layer.kernel * layer.kernel * row.in_shape[2]
            weights[layer.name] = (rng.normal(0, (2 / fan_in) ** 0.5, (layer.out_channels, layer.kernel, layer.kernel,
                                                                       row.in_shape[2])).astype(np.float32),
                                   np.zeros(layer.out_channels, np.float32))
        elif isinstance(layer, nets.Affine):
            weights[layer.name] = (rng.normal(0, (2 / row.in_shape[0]) ** 0.5, (layer.out_features,
                                                                                row.in_shape[0])).astype(np.float32),
                                   np.zeros(layer.out_features, np.float32))
    return weights, "random weights"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)

    frames = {"640x480, 1 face": scene(1), "640x480, 4 faces": scene(4)}
    print(f"OpenCV {cv2.__version__}, cv2 threads {cv2.getNumThreads()}; medians over {args.runs} runs (ms)")
    print("detection per frame:")
    for ds in (1.0, 2.0):
        det = detect.FaceDetector(downscale=ds)
        for name, frame in frames.items():
            n = len(det.detect(frame))
            print(f"  {name:<18} downscale {ds:.0f}: {median_ms(lambda: det.detect(frame), args.runs):7.2f} ms  ({n} boxes)")
        video = Path(args.data or "") / "video" / "short_hamilton_clip.mp4"
        if args.data and video.is_file():
            cap = cv2.VideoCapture(str(video))
            vframes = []
            while len(vframes) < 60:
                ok, f = cap.read()
                if not ok:
                    break
                vframes.append(f)
            cap.release()
            ts = []
            for f in vframes:
                t0 = time.perf_counter()
                det.detect(f)
                ts.append(time.perf_counter() - t0)
            print(f"  {'video 640x360':<18} downscale {ds:.0f}: {np.median(ts) * 1e3:7.2f} ms  (first {len(vframes)} frames)")

    frame = frames["640x480, 4 faces"]
    boxes = detect.FaceDetector().detect(frame)
    weights, source = float_weights(args.checkpoint)
    calib = [align.alignment_input(frame, detect.face_window(b)) for b in boxes]
    calib = (calib * 16)[:16]
    runtime = Int8Runtime(ptq.quantize_net(nets.ALIGN_NET, weights, calib))
    runtime.run(calib[0])  # compile / allocate outside the timing
    box = boxes[0]
    w0 = detect.face_window(box)
    a_in = align.alignment_input(frame, w0)
    corr = np.asarray(runtime.run(a_in), np.float64)
    w1 = align.apply_correction(w0, corr)
    steps = {
        "face_window": lambda: detect.face_window(box),
        "alignment_input 50x50": lambda: align.alignment_input(frame, w0),
        f"align net int8 ({runtime.backend})": lambda: runtime.run(a_in),
        "apply_correction": lambda: align.apply_correction(w0, corr),
        "embedding_input 112x112": lambda: align.embedding_input(frame, w1),
    }
    print(f"alignment per face (face box {box.w:.0f} px; net: {source}):")
    total = 0.0
    for name, fn in steps.items():
        ms = median_ms(fn, args.runs * 4)
        total += ms
        print(f"  {name:<28} {ms:7.3f} ms")
    print(f"  {'total':<28} {total:7.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
