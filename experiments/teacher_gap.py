"""How far the students are from their teacher, and what decides LFW's TAR at FAR 1e-3.

    python3 experiments/teacher_gap.py CHECKPOINT [CHECKPOINT ...] --data ../shared/data [--out gap.json]

For each float checkpoint (every image with its mirror image added, as the board embeds), on the trainer's
held-out CelebA identities (seed 0, 5%: the identities no checkpoint here trained on):
  * verification (balanced accuracy, TAR at FAR 1e-3) beside the dlib teacher's own, from the cached descriptors;
  * the cosine between each embedding and its teacher descriptor (the direct distillation term's 1 - loss), on the
    held-out images and on 2,000 training images: equal figures mean the student underfits its teacher;
  * the spread of distances between random pairs (5th / 50th / 95th percentile), the student's and the teacher's.
On LFW View 2 (its own crops, float): TAR with 0, 1, ... 7 false accepts of its 3,000 mismatched pairs (FAR 1e-3 is
3), and the mismatched pairs each checkpoint puts closest; then the first two checkpoints' embeddings added.
About 6 minutes for two checkpoints on 2 cores.  Reports only: nothing here chooses a threshold or a checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FALSE_ACCEPTS = 8  # TAR at 0..7 false accepts


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tar_by_false_accepts(dist: np.ndarray, same: np.ndarray, count: int = FALSE_ACCEPTS) -> list[float]:
    """TAR when the threshold admits exactly 0, 1, ... count-1 mismatched pairs (ties counted as accepted):
    the share of matched pairs strictly closer than the (k+1)-th closest mismatched pair."""
    neg = np.sort(dist[~same])
    pos = dist[same]
    return [float((pos < neg[k]).mean()) for k in range(min(count, len(neg)))]


def closest_mismatched(dist: np.ndarray, same: np.ndarray, names: list[str], count: int = 6) -> list[tuple[str, float]]:
    """The ``count`` mismatched pairs with the smallest distance: (name, distance), closest first."""
    neg = np.flatnonzero(~same)
    order = neg[np.argsort(dist[neg], kind="stable")[:count]]
    return [(names[i], float(dist[i])) for i in order]


def distance_spread(emb: np.ndarray, rng: np.random.Generator, pairs: int = 20000) -> list[float]:
    i, j = rng.integers(0, len(emb), (2, pairs))
    keep = i != j
    return [float(v) for v in np.percentile(np.linalg.norm(emb[i[keep]] - emb[j[keep]], axis=1), [5, 50, 95])]


def _embed(model_path: str, images: np.ndarray) -> np.ndarray:
    from wearface.host_tools.train import evaluate as E

    model, _ = E.load_checkpoint_model(model_path)
    embed = E.torch_embedder(model)
    out = []
    for s in range(0, len(images), 256):
        x = images[s:s + 256]
        out.append(embed(x) + embed(np.ascontiguousarray(x[:, :, ::-1])))
    return unit(np.concatenate(out).astype(np.float64))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="float checkpoints (training or shipped model_*.pt)")
    ap.add_argument("--data", required=True, help="the shared data folder (celeba/, celeba_more/, lfw/, teacher/)")
    ap.add_argument("--out", default="", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from wearface.host_tools.train import data as D
    from wearface.host_tools.train import teacher as T
    from wearface.host_tools.train.face_tensor import decode_all
    from wearface.host_tools.train.heldout import verification

    torch.set_num_threads(2)
    root = Path(args.data)
    train, val = D.split_by_identity(D.drop_singletons(D.load_celeba(root)), 0.05, 0)
    sample = train.subset(np.random.default_rng(0).choice(len(train), min(2000, len(train)), replace=False))
    cache = T.load_cache(root / "teacher" / "teacher_dlib_v1.npz")

    def teacher_of(records):
        desc, found = cache.lookup([T.celeba_key(f) for f in records.celeba_files])
        if not found.all():
            sys.exit(f"{(~found).sum()} images have no teacher descriptor")
        return unit(desc.astype(np.float64))

    t_val, t_train = teacher_of(val), teacher_of(sample)
    v = verification(t_val, val.identities)
    report: dict = {"heldout": {"images": len(val), "identities": int(len(np.unique(val.identities))),
                                "teacher": {"accuracy": v.balanced_accuracy, "tar_at_far_1e3": v.tar_at_far_1e3,
                                            "distance_spread": distance_spread(t_val, np.random.default_rng(1))}}}
    val_images, train_images = decode_all(val), decode_all(sample)
    lfw_zip, pairs_path, _ = D.lfw_paths(root / "lfw")
    pairs, lfw = D.read_pairs(pairs_path), D.LfwImages(lfw_zip)
    keys = D.pair_images(pairs)
    lfw_images = np.stack([lfw.crop112(*k) for k in keys])
    index = {k: i for i, k in enumerate(keys)}
    a = np.array([index[(p.name1, p.index1)] for p in pairs.pairs])
    b = np.array([index[(p.name2, p.index2)] for p in pairs.pairs])
    same = pairs.same()
    names = [f"{p.name1}_{p.index1}/{p.name2}_{p.index2}" for p in pairs.pairs]
    report["lfw"] = {}
    lfw_embs = []
    for path in args.checkpoints:
        e_val, e_train = _embed(path, val_images), _embed(path, train_images)
        v = verification(e_val, val.identities)
        report["heldout"][path] = {
            "accuracy": v.balanced_accuracy, "tar_at_far_1e3": v.tar_at_far_1e3,
            "cos_to_teacher_median": {"heldout": float(np.median((e_val * t_val).sum(1))),
                                      "train": float(np.median((e_train * t_train).sum(1)))},
            "distance_spread": distance_spread(e_val, np.random.default_rng(1))}
        lfw_embs.append(_embed(path, lfw_images))
    runs = list(zip(args.checkpoints, lfw_embs))
    if len(lfw_embs) >= 2:
        runs.append(("the first two added", unit(lfw_embs[0] + lfw_embs[1])))
    for label, e in runs:
        dist = np.linalg.norm(e[a] - e[b], axis=1)
        report["lfw"][label] = {"tar_by_false_accepts": tar_by_false_accepts(dist, same),
                                "closest_mismatched": closest_mismatched(dist, same, names)}

    h = report["heldout"]
    print(f"held-out CelebA identities ({h['images']} images of {h['identities']}), float, with the mirror image:")
    print("| net | accuracy | TAR at FAR 1e-3 | cos to teacher, held-out / train (median) | random-pair distance 5/50/95% |")
    print("|---|---|---|---|---|")
    t = h["teacher"]
    print(f"| dlib teacher | {100 * t['accuracy']:.2f}% | {100 * t['tar_at_far_1e3']:.1f}% | 1 | "
          f"{' / '.join(f'{x:.2f}' for x in t['distance_spread'])} |")
    for path in args.checkpoints:
        r = h[path]
        print(f"| {path} | {100 * r['accuracy']:.2f}% | {100 * r['tar_at_far_1e3']:.1f}% | "
              f"{r['cos_to_teacher_median']['heldout']:.3f} / {r['cos_to_teacher_median']['train']:.3f} | "
              f"{' / '.join(f'{x:.2f}' for x in r['distance_spread'])} |")
    print("\nLFW View 2 (its own crops, float, mirror added): TAR at 0..7 false accepts of 3,000 (FAR 1e-3 = 3)")
    for label, r in report["lfw"].items():
        print(f"  {label}: " + " ".join(f"{100 * x:.1f}" for x in r["tar_by_false_accepts"]))
        print("    closest mismatched: " + "; ".join(f"{n} {d:.3f}" for n, d in r["closest_mismatched"]))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
