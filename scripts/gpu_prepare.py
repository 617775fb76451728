"""Prepare what a lent GPU machine needs for ``scripts/gpu_train.sh``, in ``.gpu/`` (ignored by git, carried).

The device tool carries the working tree and at most 64 MiB in all, and ``../shared`` does not travel: this
writes a WebP pack of the CelebA crops (``wearface data pack``, its identity-disjoint val split = the held-out
identities the CPU runs use: val fraction 0.05, seed 0) and the dlib teacher's descriptors of exactly those
images as float16 (half the size; the loader upcasts).  Prints the sizes against the budget.

    python3 scripts/gpu_prepare.py --data ../shared/data [--pack-mb MiB]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = 64.0


def tree_mb() -> float:
    """MiB of what the device tool sends: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True)
    return sum((REPO / f).stat().st_size for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--pack-mb", type=float, default=0.0,
                    help="pack size limit in MiB (default: what the 64 MiB leaves after the working tree, the teacher "
                         "cache of ~0.27 KiB per image and 1 MiB of headroom; the tree grows as runs are committed)")
    ap.add_argument("--subsets", default="more",
                    help="CelebA subsets to pack (measured: all three, 31k crops, and more+wild, 24k, "
                         "do not fit 26 MiB even at WebP quality 40)")
    ap.add_argument("--out", default=str(REPO / ".gpu"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    pack = out / "pack.npz"
    if not args.pack_mb:
        # the teacher cache is ~4.6 MiB for the 17.8k images of celeba_more (float16 x 128 + keys)
        args.pack_mb = BUDGET_MB - tree_mb() - 5.0 - 1.0
        print(f"pack limit {args.pack_mb:.1f} MiB (64 - working tree {tree_mb():.1f} - teacher ~5 - headroom 1)")
    subprocess.run([sys.executable, "-m", "wearface.host_tools", "data", "pack", str(pack), "--data", args.data,
                    "--max-mb", str(args.pack_mb), "--subsets", args.subsets, "--no-progress"], check=True)
    from wearface.host_tools.train import data as D
    from wearface.host_tools.train import teacher as T

    p = D.load_pack(pack)
    keys = [T.celeba_key(f) for f in p.train.celeba_files + p.val.celeba_files]
    desc, found = T.load_cache(Path(args.data) / "teacher" / "teacher_dlib_v1.npz").lookup(keys)
    if not found.all():
        raise SystemExit(f"{int((~found).sum())} pack images have no teacher descriptor")
    teacher = out / "teacher16.npz"
    with open(teacher, "wb") as fh:
        np.savez(fh, keys=np.array([k.encode() for k in keys]).astype("S"), descriptors=desc.astype(np.float16),
                 meta=np.frombuffer(json.dumps({"version": T.CACHE_VERSION, "note": "float16 copy of teacher_dlib_v1 "
                                                "for the pack's images"}).encode(), dtype=np.uint8))
    sizes = {f.name: round(f.stat().st_size / 2**20, 1) for f in (pack, teacher)}
    total = tree_mb() + sum(sizes.values())
    print(f"{sizes} + working tree {tree_mb():.1f} MiB = {total:.1f} MiB of the device tool's {BUDGET_MB:.0f}")
    return 0 if total <= BUDGET_MB else 1


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
