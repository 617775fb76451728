"""Post-training quantization of trained checkpoints, and how far the int8 net drifts from the float one.

One job: torch checkpoint -> float weights (``torch_nets.export_float_weights``, BatchNorm folded)
-> ``kernels.ptq.quantize_net`` calibrated on real face crops -> ``QuantizedNet``; then reports:
per-layer cosine float vs int8 (table + PNG) and LFW View 2 accuracy float vs int8 through the
exact int8 runtime.  torch is imported inside the functions that need it.

Calibration crops come from CelebA in the LFW128 frame (``celeba/celeba_wild128.zip``, never LFW,
which is the test set), rendered through ``firmware.align`` exactly as the board renders them:
the embedding input is the canonical 112x112 frame, the alignment input the 50x50 view of
canonical [-8, 120)^2 of a randomly misplaced window (as the alignment net is trained on).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wearface.kernels import nets
from wearface.kernels import qnet as qn

from ..errors import QuantizeError

CALIBRATION_SOURCE = "wild"
#: window jitter of the alignment net's calibration crops, uniform within the broad ranges the net is
#: trained on (``train_align.Perturbation``: shift 0.12 frame widths per axis, 25 degrees, log scale 0.3):
#: shift (canonical px), angle (rad), log scale
ALIGN_JITTER = (0.12 * 112, math.radians(25.0), 0.3)


@dataclass
class FloatNet:
    """A trained net as numpy: ``weights`` {layer name: (W, b)} (conv OHWI, affine (O, I) NHWC order)."""

    spec: nets.NetSpec
    weights: dict
    checkpoint: dict
    path: str


def load_float_net(path: str | Path) -> FloatNet:
    """Read a training checkpoint (``config.net``, ``model`` state dict) and fold it to float weights."""
    from ..errors import DataError
    from .evaluate import load_checkpoint_model
    from .torch_nets import export_float_weights

    try:
        model, ckpt = load_checkpoint_model(path)
    except DataError as exc:
        raise QuantizeError(str(exc)) from None
    spec = nets.get_net(ckpt["config"]["net"])
    return FloatNet(spec, export_float_weights(model), ckpt, str(path))


def calibration_images(data_root: str | Path, spec: nets.NetSpec, count: int, seed: int = 0,
                       offset: int = 0) -> list:
    """``count`` uint8 (H, W, 3) RGB inputs for ``spec`` (112x112 embedding or 50x50 alignment crops).

    Taken every-so-often through the CelebA wild index (deterministic for ``seed``), starting at ``offset``.
    """
    from wearface.firmware import align

    from .align_data import ImageZip, read_index

    items = read_index(data_root, CALIBRATION_SOURCE)
    if not items:
        raise QuantizeError(f"{data_root}: no calibration images in source {CALIBRATION_SOURCE!r}")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(items))[offset: offset + count]
    images = []
    zf = ImageZip(data_root, CALIBRATION_SOURCE)
    try:
        for i in picks:
            frame = zf.read(items[i].path)
            centre = 8.0 + align.FRAME_CENTRE  # the LFW128 frame: canonical (0, 0) at stored pixel (8, 8)
            if spec.output == "regression":
                shift, angle, scale = ALIGN_JITTER
                window = align.window_from_params(
                    (centre + rng.uniform(-shift, shift), centre + rng.uniform(-shift, shift)),
                    math.exp(rng.uniform(-scale, scale)), rng.uniform(-angle, angle))
                images.append(align.alignment_input(frame, window))
            else:
                images.append(align.embedding_input(frame, align.window_from_params((centre, centre), 1.0)))
    finally:
        zf.close()
    for im in images:
        if im.shape != tuple(spec.input_shape):
            raise QuantizeError(f"calibration crop is {im.shape}, net {spec.name} wants {spec.input_shape}")
    return images


def quantize_float_net(fnet: FloatNet, images: list, method: str = "percentile") -> qn.QuantizedNet:
    from wearface.kernels.ptq import quantize_net

    qnet = quantize_net(fnet.spec, fnet.weights, images, method)
    qnet.metadata.update({"checkpoint": Path(fnet.path).name, "calibration_source": f"celeba {CALIBRATION_SOURCE}"})
    return qnet


def quantize_checkpoint(path: str | Path, data_root: str | Path, count: int = 128, method: str = "percentile",
                        seed: int = 0) -> tuple[qn.QuantizedNet, FloatNet]:
    """Checkpoint -> (int8 net, float net), calibrated on ``count`` real face crops."""
    fnet = load_float_net(path)
    return quantize_float_net(fnet, calibration_images(data_root, fnet.spec, count, seed), method), fnet


# --- running the int8 net ------------------------------------------------------------------------

def int8_trace(qnet: qn.QuantizedNet, image: np.ndarray) -> list:
    """Every layer's int8 output for one uint8 image, in layer order (``Int8Runtime.trace``)."""
    from wearface.kernels.runtime import Int8Runtime

    by_name = dict(Int8Runtime(qnet).trace(image))
    if not all(q.spec.name in by_name for q in qnet.layers):  # a backend that fuses layers in its trace
        by_name = dict(Int8Runtime(qnet, backend="reference").trace(image))
    return [by_name[q.spec.name] for q in qnet.layers]


def int8_embedder(qnet: qn.QuantizedNet):
    """``embed(images (N, H, W, 3) uint8) -> (N, D) float32`` through the int8 runtime (as the board)."""
    from wearface.kernels.runtime import Int8Runtime

    runtime = Int8Runtime(qnet)

    def embed(images: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(runtime.run(np.ascontiguousarray(im)), np.float32) for im in images])

    return embed


# --- drift report --------------------------------------------------------------------------------

@dataclass
class DriftRow:
    """Cosine similarity of one layer's float output and its dequantized int8 output, over the images."""

    layer: str
    kind: str
    out_shape: tuple
    cosine_mean: float
    cosine_min: float


def layer_drift(fnet: FloatNet, qnet: qn.QuantizedNet, images: list) -> list[DriftRow]:
    """Per layer: cosine(float reference output, (int8 - zero_point) * scale) with each net fed its own
    previous outputs, so the figures show the drift accumulated up to that layer."""
    from wearface.kernels import float_ref

    per_layer: list[list[float]] = [[] for _ in qnet.layers]
    for image in images:
        floats = float_ref.forward_trace(fnet.spec, fnet.weights, image)
        ints = int8_trace(qnet, image)
        scale, zp = qnet.input_scale, qnet.input_zero_point
        for i, (q, f, x) in enumerate(zip(qnet.layers, floats, ints)):
            if isinstance(q, (qn.QConv, qn.QAffine)):
                scale, zp = q.output_scale, q.output_zero_point
            deq = qn.dequantize(x, scale, zp, np.float64)
            f = np.asarray(f, np.float64).reshape(-1)
            deq = deq.reshape(-1)
            denom = np.linalg.norm(f) * np.linalg.norm(deq)
            per_layer[i].append(float(f @ deq / denom) if denom > 0 else float(np.array_equal(f, deq)))
    rows = []
    for q, row, values in zip(qnet.layers, nets.iter_counts(fnet.spec), per_layer):
        rows.append(DriftRow(q.spec.name, type(q.spec).__name__, row.out_shape, float(np.mean(values)),
                             float(np.min(values))))
    return rows


def output_error(fnet: FloatNet, qnet: qn.QuantizedNet, images: list) -> dict:
    """Final outputs, float reference vs int8 runtime (dequantized; embeddings L2-normalised):
    per output component, mean and max |difference|, and for an embedding the L2 distance."""
    from wearface.kernels import float_ref
    from wearface.kernels.runtime import Int8Runtime

    runtime = Int8Runtime(qnet)
    f = np.stack([float_ref.forward(fnet.spec, fnet.weights, im) for im in images]).astype(np.float64)
    q = np.stack([runtime.run(im) for im in images]).astype(np.float64)
    d = np.abs(f - q)
    result = {"images": len(images), "abs_diff_mean": d.mean(axis=0).tolist(), "abs_diff_max": d.max(axis=0).tolist()}
    if fnet.spec.output == "embedding":
        dist = np.linalg.norm(f - q, axis=1)
        result.update(l2_mean=float(dist.mean()), l2_max=float(dist.max()))
    return result


def write_drift_report(fnet: FloatNet, qnet: qn.QuantizedNet, images: list, held_out: list, method: str,
                       checkpoint_name: str, out_dir: Path, stem: str) -> str:
    """``wearface quantize``'s report of one method: the per-layer drift table and the final outputs' error,
    written to ``out_dir/stem.md`` and ``out_dir/stem.png``; returns the text it prints."""
    rows = layer_drift(fnet, qnet, held_out)
    table = drift_table(rows)
    title = (f"{checkpoint_name}: net {fnet.spec.name}, {method} on {len(images)} crops, "
             f"{len(held_out)} held-out crops")
    err = output_error(fnet, qnet, held_out)
    if fnet.spec.output == "regression":
        parts = ", ".join(f"{m:.5f} (max {x:.5f})" for m, x in zip(err["abs_diff_mean"], err["abs_diff_max"]))
        line = (f"final outputs |float - int8| per component (align: dx, dy in frame widths, angle in rad), "
                f"mean (max): {parts}")
    else:
        line = f"embedding L2 distance float vs int8: mean {err['l2_mean']:.4f}, max {err['l2_max']:.4f}"
    (out_dir / f"{stem}.md").write_text(f"{title}\n\n{table}\n\n{line}\n")
    save_drift_png(rows, out_dir / f"{stem}.png", title)
    return f"{title}\n{table}\n{line}\nwrote {out_dir / (stem + '.md')} and {out_dir / (stem + '.png')}"


def drift_table(rows: list[DriftRow]) -> str:
    lines = ["| layer | type | output | cosine mean | cosine min |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.layer} | {r.kind} | {'x'.join(map(str, r.out_shape))} | {r.cosine_mean:.5f} | "
                     f"{r.cosine_min:.5f} |")
    return "\n".join(lines)


def save_drift_png(rows: list[DriftRow], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(rows)), 3.6), dpi=100)
    x = np.arange(len(rows))
    ax.plot(x, [r.cosine_mean for r in rows], "o-", label="mean")
    ax.plot(x, [r.cosine_min for r in rows], "v--", label="min", alpha=0.7)
    ax.set_xticks(x, [r.layer for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("cosine(float, int8)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- LFW accuracy --------------------------------------------------------------------------------

def lfw_float_vs_int8(fnet: FloatNet, qnets, data_root: str | Path, pair_stride: int = 1,
                      progress: bool = False) -> dict:
    """LFW View 2 (10 folds, threshold from the other 9) through the float checkpoint and the int8 runtime.

    ``qnets``: one ``QuantizedNet`` or {label: QuantizedNet} (e.g. one per calibration method).
    ``pair_stride`` > 1 keeps every n-th pair (all folds, both halves) for a quick look.
    Returns {"float": VerificationResult, "int8" (or "int8 <label>"): VerificationResult, ...}.
    """
    import dataclasses

    from . import data as D
    from .evaluate import load_checkpoint_model, torch_embedder, verify_pairs

    if isinstance(qnets, qn.QuantizedNet):
        qnets = {"int8": qnets}
    else:
        qnets = {f"int8 {label}": q for label, q in qnets.items()}
    pairs_path, zip_path = _lfw_files(data_root)
    pairs = D.read_pairs(pairs_path)
    if pair_stride > 1:
        pairs = dataclasses.replace(pairs, pairs=pairs.pairs[::pair_stride])
    lfw = D.LfwImages(zip_path)
    model, _ = load_checkpoint_model(fnet.path)
    embedders = {"float": torch_embedder(model), **{k: int8_embedder(q) for k, q in qnets.items()}}
    return {label: verify_pairs(embed, pairs, lfw.crop112, batch=64, progress=progress)
            for label, embed in embedders.items()}


def lfw_int8(qnet: qn.QuantizedNet, data_root: str | Path, pair_stride: int = 1, progress: bool = False):
    """LFW View 2 through an int8 embedding net alone (e.g. a bundle's): a ``VerificationResult``."""
    import dataclasses

    from . import data as D
    from .evaluate import verify_pairs

    pairs_path, zip_path = _lfw_files(data_root)
    pairs = D.read_pairs(pairs_path)
    if pair_stride > 1:
        pairs = dataclasses.replace(pairs, pairs=pairs.pairs[::pair_stride])
    return verify_pairs(int8_embedder(qnet), pairs, D.LfwImages(zip_path).crop112, batch=64, progress=progress)


def accuracy_at(result, threshold: float) -> float:
    """Fraction of a ``VerificationResult``'s pairs decided right at one fixed θ (not re-fit per fold)."""
    return float(np.mean((result.dist < threshold) == result.same))


def lfw_summary(results: dict, checkpoint_name: str, calibration_images: int) -> dict:
    """``wearface quantize --lfw``'s lfw.json: per net (float, int8 or one per method) its accuracy, TAR at
    FAR 1e-3, mean fold threshold and pair count; the checkpoint's name and the calibration count."""
    summary = {k: {"accuracy_mean": r.mean, "accuracy_std": r.std, "tar_at_far_1e3": r.tar_at_far_1e3,
                   "threshold_mean": float(r.thresholds.mean()), "pairs": int(len(r.dist))}
               for k, r in results.items()}
    summary["checkpoint"] = checkpoint_name
    summary["calibration_images"] = calibration_images
    return summary


def _lfw_files(data_root) -> tuple[Path, Path]:
    root = Path(data_root) / "lfw"
    pairs, zip_path = root / "pairs.txt", root / "lfw128.zip"
    for p in (pairs, zip_path):
        if not p.is_file():
            raise QuantizeError(f"{p}: LFW file missing (is --data the shared data folder?)")
    return pairs, zip_path

