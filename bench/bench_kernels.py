"""Kernels benchmark (not a test): our int8 runtime's tile paths vs ONNX Runtime int8, LiteRT int8, PyTorch fp32.

    python3 bench/bench_kernels.py [--runs 200] [--warmup 20] [--nets A,B,align]

Single image, one thread everywhere (NUMBA_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, ORT
intra_op_num_threads=1, torch.set_num_threads(1)).  All engines run the same float weights
(He-initialised at random: speed does not depend on the values): ours quantized by
``kernels.ptq.quantize_net``, run on every tile path this CPU has (``kernels.tiles.available_paths()``:
``x86_vnni``, ``x86_avx2``, ``arm_dot``, ``arm_neon``, ``portable``); ONNX Runtime's int8 model is the torch module (built by
``host_tools.train.torch_nets`` from the same ``nets.py`` lists) exported to ONNX and quantized by
``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, int8 activations),
calibrated on the same images.  The engines are timed interleaved, one call each per round, so that
load from other processes hits them alike; the table gives medians over ``--runs`` rounds after
``--warmup`` rounds, and the 10th percentile (on a loaded machine the median also counts the time the
scheduler gave other processes; the low percentile is closer to the work itself), each with its ratio
to ONNX Runtime's in the same run.  Then a per-step table of model A for each path (median of separate timings of
each step), and the wall time of a fresh process that loads model A and embeds one image, with Numba's
cache warm (the first start below fills it).
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from wearface.kernels import float_ref, nets, ptq, runtime, tiles  # noqa: E402

CALIBRATION_IMAGES = 16


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def torch_module(spec, weights):
    """A torch fp32 module of ``spec`` (no BatchNorm) carrying our float weights."""
    import torch

    from wearface.host_tools.train.torch_nets import build_torch_net, module_key

    module = build_torch_net(spec, batchnorm=False).eval()
    with torch.no_grad():
        for name, (w, b) in weights.items():
            block = module.layers[module_key(name)]
            lin = block.conv if hasattr(block, "conv") else block.linear
            wt = torch.from_numpy(w.transpose(0, 3, 1, 2).copy() if w.ndim == 4 else w)
            lin.weight.copy_(wt)
            lin.bias.copy_(torch.from_numpy(b))
    return module


def ort_int8_session(spec, module, images, workdir: Path):
    """Export ``module`` to ONNX, quantize it QDQ per-channel int8, open a 1-thread session."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from wearface.host_tools.train.torch_nets import to_input

    fp32 = workdir / f"{spec.name}_fp32.onnx"
    pre = workdir / f"{spec.name}_pre.onnx"
    int8 = workdir / f"{spec.name}_int8.onnx"
    h, w, c = spec.input_shape
    torch.onnx.export(module, torch.zeros(1, c, h, w), str(fp32), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    quant_pre_process(str(fp32), str(pre))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": to_input(im[None]).numpy()} for im in images])

        def get_next(self):
            return next(self._it, None)

    quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])


def median_ms(samples) -> float:
    return float(np.median(samples) * 1e3)


def p10_ms(samples) -> float:
    return float(np.percentile(samples, 10) * 1e3)


def time_interleaved(engines: dict, runs: int, warmup: int) -> dict:
    """engines: {name: zero-arg callable}; returns {name: (median ms, 10th percentile ms)} over ``runs`` rounds."""
    samples = {name: [] for name in engines}
    for r in range(warmup + runs):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                samples[name].append(dt)
    return {name: (median_ms(s), p10_ms(s)) for name, s in samples.items()}


def per_step_table(rt, image, runs: int) -> list:
    """[(step name, MACs, median ms)] for each op of ``rt`` (a conv with its fused pool, a pool, an affine)."""
    macs = {r.layer.name: r.macs for r in nets.iter_counts(rt.spec)}
    rows = []
    for names, fn in rt.steps_for(image, fuse_blocks=False):
        median, _ = time_interleaved({"step": fn}, runs, 5)["step"]
        rows.append(("+".join(names), sum(macs[n] for n in names), median))
    return rows


START_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
from wearface.kernels import nets, ptq
from wearface.kernels.runtime import Int8Runtime
rt = Int8Runtime(ptq.random_quantized_net(nets.MODEL_A, 5))
rt.run(np.zeros(nets.MODEL_A.input_shape, np.uint8))
print(rt.path, time.perf_counter() - t0)
"""


def process_start_s(path: str, runs: int = 5) -> tuple[float, float]:
    """(median wall s of a fresh process to load model A and embed one image, of which import + run) with
    Numba's cache warm; one unmeasured start first fills the cache."""
    env = dict(os.environ, WEARFACE_KERNELS=path)
    walls, inner = [], []
    for r in range(runs + 1):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", START_SNIPPET], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        if r:
            walls.append(time.perf_counter() - t0)
            inner.append(float(out[-1]))
    return float(np.median(walls)), float(np.median(inner))


def print_steps(rows: list, title: str) -> None:
    total = sum(r[2] for r in rows)
    print(f"\n{title}")
    print("| step | MMACs | ms | share | GMAC/s |")
    print("|---|---:|---:|---:|---:|")
    for name, macs, ms in rows:
        rate = f"{macs / ms / 1e6:.0f}" if macs and ms > 0 else ""
        print(f"| {name} | {macs / 1e6:.2f} | {ms:.3f} | {100 * ms / total:.0f}% | {rate} |")
    print(f"| sum of steps | {sum(r[1] for r in rows) / 1e6:.1f} | {total:.3f} | | "
          f"{sum(r[1] for r in rows) / total / 1e6:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="timed rounds (median; >= 50)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--nets", default="A,B,align", help="comma-separated nets (nets.get_net names)")
    ap.add_argument("--no-start", action="store_true", help="skip the process-start timing")
    args = ap.parse_args(argv)
    paths = tiles.available_paths()
    import onnxruntime
    import torch

    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {__import__('numba').__version__}, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    print(f"one thread, single image, median of {args.runs} interleaved rounds after {args.warmup} warm-up rounds")
    print(f"tile paths on this CPU: {', '.join(paths)} (selected: {tiles.selected_path()}); "
          f"load average {os.getloadavg()[0]:.1f}\n")

    engines, agreement, ours_rt = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in [nets.get_net(n) for n in args.nets.split(",")]:
            weights = ptq.random_float_weights(spec, seed=1)
            images = ptq.random_images(spec.input_shape, CALIBRATION_IMAGES, seed=2)
            image = images[0]
            qnet = ptq.quantize_net(spec, weights, images, method="percentile")
            path_rts = {p: runtime.Int8Runtime(qnet, "tiles", p) for p in paths}
            rt = path_rts[paths[0]]
            module = torch_module(spec, weights)
            sess = ort_int8_session(spec, module, images, Path(tmp))
            from wearface.host_tools.train.torch_nets import to_input

            x_nchw = to_input(image[None]).numpy()
            x_torch = torch.from_numpy(x_nchw)

            def torch_run(module=module, x=x_torch):
                with torch.inference_mode():
                    return module(x)

            for p, r in path_rts.items():
                engines[(spec.name, f"ours int8 ({p})")] = lambda rt=r, im=image: rt.run(im)
            engines[(spec.name, "ONNX Runtime int8 QDQ")] = lambda s=sess, x=x_nchw: s.run(None, {"x": x})
            engines[(spec.name, "PyTorch fp32")] = torch_run
            try:  # LiteRT on the .tflite of this same int8 net (host_tools/bundle/tflite_export.py; extra "litert")
                from wearface.host_tools.bundle import tflite_export as tfl

                for resolver, label in (("builtin", "LiteRT int8 (builtin)"), ("default", "LiteRT int8 (XNNPACK)")):
                    interp = tfl.load_interpreter(tfl.export_tflite(qnet)[0], resolver, threads=1)
                    if interp is not None:
                        engines[(spec.name, label)] = lambda i=interp, im=image: tfl.run_interpreter(i, im)
            except ImportError:
                pass
            ours_rt[spec.name] = (path_rts, image)
            ref = float_ref.forward(spec, weights, image)
            ort_out = sess.run(None, {"x": x_nchw})[0][0]
            cos = lambda a, b: float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
            agreement[spec.name] = (cos(rt.run(image), ref), cos(ort_out, ref), cos(torch_run()[0].numpy(), ref))

        medians = time_interleaved(engines, args.runs, args.warmup)

    print("| net | engine | median ms | time / ORT int8 | p10 ms | p10 / ORT p10 |")
    print("|---|---|---:|---:|---:|---:|")
    for (net, engine), (ms, p10) in medians.items():
        ort_ms, ort_p10 = medians[(net, "ONNX Runtime int8 QDQ")]
        rel = engine.startswith(("ours", "LiteRT"))
        ratio = f"{ms / ort_ms:.2f}x" if rel else ""
        ratio10 = f"{p10 / ort_p10:.2f}x" if rel else ""
        print(f"| {net} | {engine} | {ms:.3f} | {ratio} | {p10:.3f} | {ratio10} |")
    print("\ncosine to our float reference (ours int8, ORT int8, torch fp32):")
    for net, (a, b, c) in agreement.items():
        print(f"  {net}: {a:.4f} {b:.4f} {c:.4f}")

    for net in ours_rt:
        if net not in ("A", "B"):
            continue
        path_rts, image = ours_rt[net]
        for p, rt in path_rts.items():
            n = max(50, args.runs // 2)
            print_steps(per_step_table(rt, image, n),
                        f"model {net}, path {p}, per layer (pools fused into their conv; the first step also loads "
                        f"the image; median of {n} runs each):")
    if not args.no_start:
        print("\nprocess start with a warm Numba cache (load model A + embed one image; median of 5 starts):")
        print("| path | wall s (python start + imports + load + run) | of which imports + load + first run s |")
        print("|---|---:|---:|")
        for p in paths:
            wall, inner = process_start_s(p)
            print(f"| {p} | {wall:.2f} | {inner:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
