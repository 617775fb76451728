"""The seed's "Pairs vs. Multi-batch" slides: train model A both ways at equal images seen, plot the curves.

Two runs with everything equal (net, data, seed, batch k, learning-rate schedule, augmentation, images seen)
except the loss on each batch of k embedded images:

* ``pairs``: the hinge on k/2 disjoint pairs (half of them positive pairs, ``PairBatchSampler``);
* ``multibatch``: the hinge on all (k² - k)/2 pairs of a P x K batch (positive and negative losses balanced).

Both are scored with one yardstick every ``--eval-every`` steps: the balanced multibatch loss on fixed
P x K batches of training images ("train") and of held-out identities ("test"), and the LFW View 1 dev
accuracy.  Run: ``python -m experiments.pairs_vs_multibatch --data DATA_OR_PACK --out DIR
--images 60000 [--device cuda]``; writes ``DIR/{pairs,multibatch}/history.jsonl`` and
``DIR/pairs_vs_multibatch.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from wearface.host_tools.train.train import TrainConfig, Trainer

LOSSES = ("pairs", "multibatch")


def read_history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(histories: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    for name, rows in histories.items():
        x = [r["images_seen"] for r in rows]
        # histories from before the fixed-batch metric existed: the running (augmented) training loss
        axes[0].plot(x, [r.get("train_fixed_loss", r["train_loss"]) for r in rows], "o-", label=name)
        axes[1].plot(x, [r["val_loss"] for r in rows], "o-", label=name)
        axes[2].plot(x, [100 * r["lfw_dev_acc"] for r in rows], "o-", label=name)
    for ax, t in zip(axes, ("train loss (fixed train batches, or running)", "test loss (held-out identities)",
                            "LFW View 1 dev accuracy %")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("images seen")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="shared data folder or pack")
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=60_000, help="images seen per run")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--distance-scale", type=float, default=1.0, help="the hinge sees SCALE * d (losses.py)")
    ap.add_argument("--theta", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the plot from the histories")
    args = ap.parse_args(argv)
    out = Path(args.out)
    histories = {}
    for loss in LOSSES:
        run_dir = out / loss
        if not args.plot_only:
            cfg = TrainConfig(net="A", data=args.data, out=str(run_dir), device=args.device, images=args.images,
                              batch=args.batch, loss=loss, weighting="balanced", lr=args.lr, seed=args.seed,
                              warmup_steps=args.warmup_steps, distance_scale=args.distance_scale, theta=args.theta,
                              workers=args.workers, threads=args.threads, eval_every_steps=args.eval_every,
                              ckpt_every=args.eval_every)
            if not args.resume and (run_dir / "history.jsonl").exists():
                (run_dir / "history.jsonl").unlink()
            Trainer(cfg, resume=args.resume, progress=False).run()
        histories[loss] = read_history(run_dir / "history.jsonl")
    plot(histories, out / "pairs_vs_multibatch.png",
         f"model A, batch {args.batch}, {args.images} images seen per run, distance scale {args.distance_scale:g}, "
         f"θ {args.theta:g}, device {args.device}")
    for loss, rows in histories.items():
        last = rows[-1]
        print(f"{loss}: images {last['images_seen']}, train {last['train_fixed_loss']:.4f}, test {last['val_loss']:.4f}, "
              f"LFW dev {100 * last['lfw_dev_acc']:.1f}%, wall {last['train_wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
