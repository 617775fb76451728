"""Render a monitor recording (``wearface monitor --record FILE.npz``) as one PNG.

One job: three panels — the debug embeddings in 2D (PCA, coloured by the board's decision), each track's
distance to the nearest enrolled person over time with the threshold θ (with a bundle that carries a cohort: the
score θ bounds, distance / the probe's k-th nearest cohort distance), and the histogram of the board's
per-stage latency (one value per stats window).  matplotlib with the Agg backend; no torch, no OpenCV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

RECORDING_KEYS = ("t", "track", "embedding", "name", "distance", "threshold")


def load_recording(path: str | Path) -> dict:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a monitor recording ({exc})") from None
    missing = [k for k in RECORDING_KEYS if k not in data]
    if missing:
        raise DataError(f"{path}: recording lacks {missing} (expected the arrays of `wearface monitor --record`)")
    return data


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2): projection on the two leading principal components (zeros when N < 2)."""
    if len(x) < 2:
        return np.zeros((len(x), 2), np.float32)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def compared_with_theta(rec: dict) -> tuple[np.ndarray, str, str]:
    """(N,) what the bundle's rule compared with θ for each embedding, its axis label and the panel's title: the
    distance, or with a cohort (``threshold_metric`` "l2_cohort") the score.  Recordings before 0.2.3 carry no score
    and no rule: their θ is a distance."""
    if str(rec.get("threshold_metric", "")) == "l2_cohort" and "score" in rec:
        return (rec["score"], "score: distance / the probe's k-th nearest cohort distance",
                "score against the gallery over time (cohort rule)")
    return rec["distance"], "distance to nearest enrolled person", "distance to gallery over time"


def plot_recording(path: str | Path, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = load_recording(path)
    names = np.where(rec["name"] == "", "unknown", rec["name"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    xy = pca_2d(rec["embedding"].astype(np.float64))
    for label in sorted(set(names.tolist())):
        sel = names == label
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, label=f"{label} ({sel.sum()})",
                   marker="x" if label == "unknown" else "o")
    ax.set_title(f"debug embeddings, PCA 2D ({len(names)} vectors)")
    ax.legend(fontsize=8)

    ax = axes[1]
    t0 = float(rec["t"].min()) if len(rec["t"]) else 0.0
    value, ylabel, title = compared_with_theta(rec)
    for track in sorted(set(rec["track"].tolist())):
        sel = rec["track"] == track
        ax.plot(rec["t"][sel] - t0, value[sel], ".-", ms=3, lw=0.8, label=f"track {track}")
    theta = float(rec["threshold"])
    if np.isfinite(theta):
        ax.axhline(theta, color="k", ls="--", lw=1, label=f"θ = {theta:.3f}")
        finite = value[np.isfinite(value)]
        ax.set_ylim(0.0, 1.1 * max(theta, float(finite.max()) if len(finite) else theta))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)

    ax = axes[2]
    drawn = False
    for stage in ("detect", "align", "embed", "match", "frame"):
        values = rec.get(f"latency_{stage}_ms")
        if values is None:
            continue
        values = values[np.isfinite(values)]
        if len(values):
            ax.hist(values, bins=20, alpha=0.5, label=f"{stage} (median {np.median(values):.1f} ms)")
            drawn = True
    ax.set_xlabel("ms (mean per stats window)")
    ax.set_title("board latency per stage")
    if drawn:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
