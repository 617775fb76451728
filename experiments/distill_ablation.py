"""Issue 7's ablation: model A trained seven ways on the same data and the same number of images, scored alike.

Rows (everything else equal: net A with BatchNorm, CelebA train split, seed, batch 128, AdamW with warm-up and
cosine decay, augmentation, images seen, the hinge's distance scale and θ but in the last row):

* ``pairs``: the hinge on k/2 disjoint pairs (the seed's baseline);
* ``multibatch-uniform``: the hinge on all (k² - k)/2 pairs of a P x K batch, every pair weighted alike;
* ``multibatch-balanced``: the same, positive and negative pair losses averaged separately;
* ``+distill``: multibatch-balanced + the relational and direct distillation terms (``losses.DistillationLoss``)
  against the dlib teacher's cached descriptors;
* ``+distill (every face)``: as ``+distill`` plus the singleton identities and the shared video's faces (no labels
  used for them) drawn as 10 extra images per batch (their share of all images);
* ``distill only``: the distillation terms alone (hinge weight 0), every face, uniform random batches: no
  identity label used at all;
* ``+distill (hinge in teacher units)``: as ``+distill`` with the hinge at distance scale 40/3 and θ 19/3, so
  it is zero for positives closer than 0.4 and negatives farther than 0.55 — where the teacher puts them
  (the other rows' scale 4, θ 5 pushes negatives beyond 1.5, against the relational term).

Each row: LFW View 1 dev accuracy during training (``history.jsonl``, plotted against images seen), then LFW
View 2 (10 folds) of the final weights in float and through the board's int8 kernels (MSE PTQ on 128 CelebA
crops, as the shipped bundle).  Writes ``OUT/<row>/`` run folders, ``OUT/ablation.json``, ``OUT/ablation.md``
(the table) and ``OUT/ablation.png``.  Rows already finished are not re-run (``--resume`` continues a cut one).

Run: ``python -m experiments.distill_ablation --data ../shared/data --teacher T.npz
--video ../shared/data/video/short_hamilton_clip.mp4 --out runs/ablation --images 200000``
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from experiments.pairs_vs_multibatch import plot, read_history
from wearface.host_tools.train.train import TrainConfig, Trainer

ROWS = {
    "pairs": dict(loss="pairs", weighting="balanced"),
    "multibatch-uniform": dict(loss="multibatch", weighting="uniform"),
    "multibatch-balanced": dict(loss="multibatch", weighting="balanced"),
    "+distill": dict(loss="multibatch", weighting="balanced", teacher=True),
    "+distill (every face)": dict(loss="multibatch", weighting="balanced", teacher=True, every_face=True),
    "distill only": dict(loss="multibatch", weighting="balanced", teacher=True, every_face=True, hinge_weight=0.0),
    # the hinge's zero-loss zones moved to the teacher's distances: positives below 0.4, negatives above 0.55
    "+distill (hinge in teacher units)": dict(loss="multibatch", weighting="balanced", teacher=True,
                                              distance_scale=40 / 3, theta=19 / 3),
}


def row_dir(out: Path, name: str) -> Path:
    return out / re.sub(r"[^a-z0-9]+", "-", name.replace("+", "plus-")).strip("-")


def row_config(name: str, args) -> TrainConfig:
    spec = ROWS[name]
    every = spec.get("every_face", False)
    return TrainConfig(
        net=args.net, data=args.data, out=str(row_dir(Path(args.out), name)), device=args.device, images=args.images,
        batch=args.batch, loss=spec["loss"], weighting=spec["weighting"], theta=spec.get("theta", args.theta),
        distance_scale=spec.get("distance_scale", args.distance_scale), lr=args.lr, seed=args.seed, workers=args.workers,
        threads=args.threads,
        eval_every_steps=args.eval_every, ckpt_every=200,
        teacher=args.teacher if spec.get("teacher") else "", hinge_weight=spec.get("hinge_weight", 1.0),
        all_faces=every, extra_per_batch=args.extra_per_batch if every else 0,
        video=tuple(args.video) if every else (), video_bundle=args.video_bundle)


def view2(checkpoint: Path, data: str) -> dict:
    """LFW View 2 of a checkpoint: float, and int8 through the board kernels (MSE PTQ, 128 calibration crops)."""
    from wearface.host_tools.train import data as D
    from wearface.host_tools.train import evaluate as E
    from wearface.host_tools.train.quantize import int8_embedder, quantize_checkpoint

    lfw_zip, pairs_path, _ = D.lfw_paths(data)
    pairs, lfw = D.read_pairs(pairs_path), D.LfwImages(lfw_zip)
    model, _ = E.load_checkpoint_model(checkpoint)
    fl = E.verify_pairs(E.torch_embedder(model), pairs, lfw.crop112)
    qnet, _ = quantize_checkpoint(checkpoint, data, count=128, method="mse")
    q = E.verify_pairs(int8_embedder(qnet), pairs, lfw.crop112)
    return {"float": [fl.mean, fl.std], "int8": [q.mean, q.std], "tar_far_1e-3_float": fl.tar_at_far_1e3}


def table(results: dict, args) -> str:
    lines = ["| row | LFW View 2 float | int8 (board kernels) | LFW dev (View 1) | images seen | train wall | machine |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['float'][0]:.2f}% ± {100 * r['float'][1]:.2f} | {100 * r['int8'][0]:.2f}% ± "
                     f"{100 * r['int8'][1]:.2f} | {100 * r['dev']:.1f}% | {r['images_seen']:,} | {r['wall_s'] / 60:.1f} min | "
                     f"{r['machine']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the shared data folder (CelebA subsets and lfw/)")
    ap.add_argument("--teacher", required=True, help="teacher descriptor cache covering every CelebA image and the video faces")
    ap.add_argument("--video", action="append", default=[], help="video(s) whose faces the every-face rows use")
    ap.add_argument("--video-bundle", default="models/default.wfb")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    ap.add_argument("--net", default="A")
    ap.add_argument("--images", type=int, default=200_000, help="images seen per row")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--extra-per-batch", type=int, default=10,
                    help="every-face rows: extras per batch (of --batch; 10 of 128 is their share of the images)")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between LFW dev evaluations (0: each epoch)")
    ap.add_argument("--distance-scale", type=float, default=4.0)
    ap.add_argument("--theta", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue a cut row from its last.pt")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    machine = f"{platform.machine()} {__import__('os').cpu_count()} CPUs, {args.device}"
    for name in [r for r in args.rows.split(",") if r]:
        if name not in ROWS:
            raise SystemExit(f"unknown row {name!r}; rows: {', '.join(ROWS)}")
        if name in results:
            continue
        cfg = row_config(name, args)
        run = Path(cfg.out)
        if not args.resume and (run / "history.jsonl").exists():
            (run / "history.jsonl").unlink()
        t0 = time.perf_counter()
        trainer = Trainer(cfg, resume=args.resume, progress=False)
        trainer.run()
        hist = read_history(run / "history.jsonl")
        print(f"{name}: trained in {time.perf_counter() - t0:.0f} s; scoring LFW View 2", flush=True)
        results[name] = {**view2(run / "last.pt", args.data), "dev": hist[-1]["lfw_dev_acc"],
                         "images_seen": hist[-1]["images_seen"], "wall_s": hist[-1]["train_wall_s"], "machine": machine,
                         "config": {k: v for k, v in cfg.__dict__.items() if k not in ("extra",)}}
        results_path.write_text(json.dumps(results, indent=1, default=list))
        print(table({name: results[name]}, args).splitlines()[-1], flush=True)
    histories = {name: read_history(row_dir(out, name) / "history.jsonl") for name in results}
    plot(histories, out / "ablation.png", f"model {args.net}: {args.images:,} images per row, batch {args.batch}, "
         f"hinge distance scale {args.distance_scale:g}, θ {args.theta:g}")
    (out / "ablation.md").write_text(table(results, args) + "\n")
    print(table(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
