"""LFW verification: embed pair images, k-fold accuracy with the threshold chosen on the other folds, ROC.

One job: turn an embedding function and a pairs file into accuracy numbers and a ROC curve.  The protocol is
LFW's "unrestricted, labeled outside data" View 2: for each of the 10 folds, the distance threshold that
maximises accuracy on the other 9 folds is applied to it; we report the mean and the (population) standard
deviation over the folds, and TAR at FAR 1e-3 over all 6,000 pairs.  Distances are Euclidean (not squared)
between L2-normalised embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from . import data as D


def best_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (``same`` iff ``dist < t``) with the highest accuracy on these pairs.

    Candidates are the midpoints between consecutive sorted distances (and both ends); ties go to the smaller.
    """
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], same[order].astype(np.int64)
    # accuracy if the first i pairs (sorted) are called "same": correct = same among them + different after
    correct = np.concatenate([[0], np.cumsum(s)]) + np.concatenate([[(1 - s).sum()], (1 - s).sum() - np.cumsum(1 - s)])
    i = int(np.argmax(correct))
    if i == 0:
        return float(d[0] - 1e-6)
    if i == len(d):
        return float(d[-1] + 1e-6)
    return float((d[i - 1] + d[i]) / 2)


def kfold_accuracy(dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per fold: (accuracy with the threshold from the other folds, that threshold).  One fold: its own best."""
    fold_ids = np.unique(folds)
    accs, ths = [], []
    for f in fold_ids:
        test = folds == f
        train = ~test if len(fold_ids) > 1 else test
        t = best_threshold(dist[train], same[train])
        accs.append(float(np.mean((dist[test] < t) == same[test])))
        ths.append(t)
    return np.array(accs), np.array(ths)


def roc(dist: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) arrays as the threshold sweeps over all distances, FAR ascending."""
    order = np.argsort(dist, kind="stable")
    s = same[order]
    tar = np.concatenate([[0.0], np.cumsum(s) / max(1, s.sum())])
    far = np.concatenate([[0.0], np.cumsum(~s) / max(1, (~s).sum())])
    return far, tar


def tar_at_far(dist: np.ndarray, same: np.ndarray, far_target: float = 1e-3) -> float:
    """The highest TAR whose FAR is <= ``far_target`` (with 3,000 negatives, 1e-3 allows 3 false accepts)."""
    far, tar = roc(dist, same)
    ok = far <= far_target + 1e-12
    return float(tar[ok].max())


@dataclass
class VerificationResult:
    accuracies: np.ndarray
    thresholds: np.ndarray
    tar_at_far_1e3: float
    dist: np.ndarray = field(repr=False)
    same: np.ndarray = field(repr=False)

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std())

    def summary(self) -> str:
        return (f"accuracy {100 * self.mean:.2f}% ± {100 * self.std:.2f} over {len(self.accuracies)} folds, "
                f"TAR {100 * self.tar_at_far_1e3:.2f}% at FAR 1e-3, mean threshold {self.thresholds.mean():.3f}")


def verify_pairs(embed: Callable[[np.ndarray], np.ndarray], pairs: D.PairsFile, image_of: Callable[[str, int], np.ndarray],
                 batch: int = 256, progress: bool = False) -> VerificationResult:
    """Embed every image the pairs use (``image_of(name, index) -> (112,112,3) uint8``), then score.

    ``embed``: (N, 112, 112, 3) uint8 RGB -> (N, D) float embeddings (L2-normalised).
    """
    from tqdm import tqdm

    keys = D.pair_images(pairs)
    emb = []
    for s in tqdm(range(0, len(keys), batch), desc="embed", disable=not progress, unit="batch"):
        emb.append(np.asarray(embed(np.stack([image_of(*k) for k in keys[s : s + batch]])), dtype=np.float64))
    return score_pairs(np.concatenate(emb), keys, pairs)


def score_pairs(emb: np.ndarray, keys: list, pairs: D.PairsFile) -> VerificationResult:
    """k-fold result from embeddings ``emb[j]`` of the images ``keys[j]`` = (name, index) the pairs use."""
    index = {k: i for i, k in enumerate(keys)}
    a = np.array([index[(p.name1, p.index1)] for p in pairs.pairs])
    b = np.array([index[(p.name2, p.index2)] for p in pairs.pairs])
    dist = np.linalg.norm(emb[a] - emb[b], axis=1)
    same = pairs.same()
    accs, ths = kfold_accuracy(dist, same, pairs.folds())
    return VerificationResult(accs, ths, tar_at_far(dist, same), dist, same)


def torch_embedder(model, device: str = "cpu", channels_last: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """An ``embed`` function for ``verify_pairs`` from a torch embedding module (run in eval mode, no grad)."""
    import torch

    from .torch_nets import to_input

    def embed(images: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x = to_input(images).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float().cpu().numpy()
        model.train(was_training)
        return out

    return embed


def save_roc_png(result: VerificationResult, path: str | Path, title: str) -> None:
    """ROC curve (TAR vs FAR, log FAR axis) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    far, tar = roc(result.dist, result.same)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(np.maximum(far, 1e-4), tar)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_checkpoint_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode, checkpoint dict) from a training checkpoint or a shipped ``model_*.pt``."""
    import torch

    from wearface.kernels import nets

    from .torch_nets import build_torch_net

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        net = ckpt["config"]["net"]
        model = build_torch_net(nets.get_net(net), batchnorm=ckpt["config"].get("batchnorm", True))
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, OSError) as exc:
        raise DataError(f"{path}: not a wearface checkpoint ({exc})") from None
    return model.to(device).eval(), ckpt
