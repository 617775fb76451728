"""The seed's variance claim: gradient variance vs batch size k for the k/2-pairs and the multibatch estimates.

At fixed weights, both estimators are unbiased for the gradient of the mean pair loss over a pool of images
(uniform weighting, all pairs).  For each k we draw ``trials`` random batches of k distinct images, compute

* pairs: the hinge on the k/2 disjoint pairs (0,1), (2,3), ... of the (random) batch;
* multibatch: the hinge on all (k² - k)/2 pairs of the same batch;

and report E|g - ḡ|² (the trace of the estimator's covariance), where ḡ is the exact full-pool gradient.

What "the gradient" is here: the gradient with respect to the parameters of the last layer (the 128 x 256
``embedding`` affine and its bias), with the layers below frozen and their 256-d outputs computed once for the
pool.  That makes thousands of batches affordable on a CPU; the estimators' randomness (which pairs are seen)
is the same as for the full network's gradient.

Run: ``python -m experiments.grad_variance --data ../shared/data --checkpoint CKPT --out DIR``
(writes ``grad_variance.json`` and ``grad_variance.png``).  Shared data is read, nothing from it is written.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wearface.host_tools.train import data as D
from wearface.host_tools.train.losses import hinge, pair_distances
from wearface.host_tools.train.torch_nets import build_torch_net, to_input

KS = (8, 16, 32, 64, 128, 256, 512)


def pool_features(model, records: D.FaceRecords, n_images: int, seed: int, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 256) float64 before the embedding layer, labels (N,)) for a random pool of images."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(records), size=min(n_images, len(records)), replace=False))
    feats = []
    body = list(model.layers.values())[:-1]  # everything but the embedding affine
    model.eval()
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            x = to_input(np.stack([records.decode(int(i)) for i in idx[s : s + batch]]))
            for block in body:
                x = block(x)
            feats.append(x.double())
    return torch.cat(feats), torch.as_tensor(records.labels()[idx])


def last_layer_grad(w, b, feats, labels, pairs_only: bool, theta: float = 1.0) -> torch.Tensor:
    """Gradient (flattened, W then b) of the uniform mean hinge on the batch's pairs."""
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    e = F.normalize(feats @ w.T + b, dim=1)
    if pairs_only:
        d = torch.sqrt(torch.clamp(((e[0::2] - e[1::2]) ** 2).sum(1), min=1e-12))
        same = labels[0::2] == labels[1::2]
    else:
        k = e.shape[0]
        iu = torch.triu_indices(k, k, offset=1)
        d = pair_distances(e)[iu[0], iu[1]]
        same = (labels[:, None] == labels[None, :])[iu[0], iu[1]]
    loss = hinge(d, same, theta).mean()
    gw, gb = torch.autograd.grad(loss, (w, b))
    return torch.cat([gw.reshape(-1), gb])


def full_gradient(w, b, feats, labels, chunk: int = 1024) -> torch.Tensor:
    """Exact gradient of the mean hinge over all N(N-1)/2 pairs of the pool (summed in row chunks)."""
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    e = F.normalize(feats @ w.T + b, dim=1)
    n = e.shape[0]
    total = 0.0
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(n, s + chunk))
        d = pair_distances(e[rows], e)
        same = labels[rows][:, None] == labels[None, :]
        upper = rows[:, None] < torch.arange(n)[None, :]
        total = total + (hinge(d, same, 1.0) * upper).sum()
    loss = total / (n * (n - 1) / 2)
    gw, gb = torch.autograd.grad(loss, (w, b))
    return torch.cat([gw.reshape(-1), gb])


def measure(w, b, feats, labels, ks=KS, trials: int = 300, seed: int = 0) -> dict:
    """{k: {"pairs": variance, "multibatch": variance}} with variance = mean |g - g_full|² over ``trials`` batches."""
    g_full = full_gradient(w, b, feats, labels)
    rng = np.random.default_rng(seed)
    n = feats.shape[0]
    out = {}
    for k in ks:
        res = {"pairs": [], "multibatch": []}
        for _ in range(trials):
            idx = torch.as_tensor(rng.choice(n, size=k, replace=False))
            for name, pairs_only in (("pairs", True), ("multibatch", False)):
                g = last_layer_grad(w, b, feats[idx], labels[idx], pairs_only)
                res[name].append(float(((g - g_full) ** 2).sum()))
        out[k] = {name: float(np.mean(v)) for name, v in res.items()}
        out[k].update({f"{name}_sem": float(np.std(v) / np.sqrt(len(v))) for name, v in res.items()})
    out["full_grad_norm2"] = float((g_full**2).sum())
    return out


def fitted_slope(ks, values) -> float:
    """Least-squares slope of log(variance) on log(k)."""
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    for label, res in results.items():
        ks = sorted(int(k) for k in res if str(k).isdigit())
        for name, style in (("pairs", "o-"), ("multibatch", "s-")):
            v = [res[str(k)][name] if str(k) in res else res[k][name] for k in ks]
            ax.loglog(ks, v, style, label=f"{name}, {label} (slope {fitted_slope(ks, v):.2f})")
    ax.set_xlabel("batch size k (images)")
    ax.set_ylabel("E |g - full gradient|²")
    ax.set_title("Gradient variance vs k (last layer, fixed weights)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="shared data folder")
    ap.add_argument("--checkpoint", default="", help="trained checkpoint (default: only a random init)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pool", type=int, default=2000, help="images in the pool (from the held-out identities + train)")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = D.drop_singletons(D.load_celeba(args.data))
    _, val = D.split_by_identity(records, 0.05, 0)  # the same held-out identities as training's default split
    models = {"random init": build_torch_net("A")}
    torch.manual_seed(args.seed)
    if args.checkpoint:
        from wearface.host_tools.train.evaluate import load_checkpoint_model

        models["trained"] = load_checkpoint_model(args.checkpoint)[0]
    results = {}
    for label, model in models.items():
        feats, labels = pool_features(model, val, args.pool, args.seed)
        lin = model.layers["embedding"].linear
        res = measure(lin.weight.double(), lin.bias.double(), feats, labels, trials=args.trials, seed=args.seed)
        ks = [k for k in KS]
        res["slope_pairs"] = fitted_slope(ks, [res[k]["pairs"] for k in ks])
        res["slope_multibatch"] = fitted_slope(ks, [res[k]["multibatch"] for k in ks])
        res["pool_images"], res["pool_identities"] = int(len(labels)), int(len(torch.unique(labels)))
        results[label] = {str(k): v for k, v in res.items()}
        print(label, {k: v for k, v in res.items() if not isinstance(k, int)})
        for k in KS:
            print(f"  k={k:4d} pairs {res[k]['pairs']:.3e}  multibatch {res[k]['multibatch']:.3e}  ratio "
                  f"{res[k]['pairs'] / res[k]['multibatch']:.1f}")
    (out / "grad_variance.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "grad_variance.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
