#!/usr/bin/env python3
"""Take a long run's ``last.pt`` (or ``ema.pt``) as a shippable checkpoint: weights only, with how it was trained.

The long runs (``scripts/long_run.sh A|B``) keep training across sessions; a bundle is built from a snapshot of it.
``last.pt`` is chosen, not ``best.pt``: best.pt is picked on the held-out identities whose report half the bundle's
open-set figures are measured on, the latest row is picked on nothing.  The snapshot drops the optimizer state
(a third of the size) and records in ``extra`` what ``wearface bundle build`` copies into the manifest's
provenance (``bundle inspect`` prints it): the training command, the data, the machine, the images seen and the
history rows up to the snapshot.

``--ema`` takes ``ema.pt`` instead: the moving average of the weights written at every row (``--ema-decay``),
also chosen on nothing (the latest row).

Usage (run right after a history row, when last.pt is at that row's step; ema.pt always is):

    python3 scripts/snapshot_checkpoint.py models/runs/a_5m models/checkpoints/model_a_long_1504k.pt
    python3 scripts/snapshot_checkpoint.py --ema models/runs/a_5m models/checkpoints/model_a_long_ema_2304k.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

COMMAND_A = ("wearface train --net A --data ../shared/data --out models/runs/a_5m --images 5000000 --batch 128 "
           "--weighting balanced --distance-scale 4 --theta 5 --teacher ../shared/data/teacher/teacher_dlib_v1.npz "
           "--all-faces --extra-per-batch 10 --pipeline memory --damage 1.0 --select-on heldout --threads 1 "
           "--ckpt-every 100 --no-progress [--resume]  (scripts/long_run_a.sh, resumed every session; --ema-decay 0.998 "
           "from step 16900 on)")
# model B's run (session 10 on) has averaged its weights from its first step
COMMAND_B = COMMAND_A.replace("--net A", "--net B").replace("a_5m", "b_5m").replace(
    "(scripts/long_run_a.sh, resumed every session; --ema-decay 0.998 from step 16900 on)",
    "(scripts/long_run.sh B, resumed every session; --ema-decay 0.998 from its first step)")
DATA = ("CelebA crops (celeba_wild128 + celeba_more112; non-commercial research terms) with camera damage + the "
        "dlib ResNet teacher's descriptors (CC0)")
MACHINE = "2 shared x86_64 vCPUs, one torch thread, resumed across sessions"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the run folder (last.pt, history.jsonl)")
    ap.add_argument("out", help="the checkpoint to write (.pt)")
    ap.add_argument("--last", help="a copy of last.pt taken at a row (default: RUN/last.pt)")
    ap.add_argument("--ema", action="store_true", help="the weights' moving average, RUN/ema.pt, instead of last.pt")
    args = ap.parse_args(argv)
    run = Path(args.run)
    ckpt = torch.load(run / "ema.pt" if args.ema else args.last or run / "last.pt", map_location="cpu",
                      weights_only=False)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in history if r.get("step", 0) <= ckpt["step"]]
    if not rows or rows[-1]["step"] != ckpt["step"]:
        print(f"error: last.pt is at step {ckpt['step']}, which has no history row: snapshot right after a row "
              f"(last row at step {history[-1]['step'] if history else None})", file=sys.stderr)
        return 2
    for key in ("optimizer", "scheduler", "torch_rng", "ema"):
        ckpt.pop(key, None)
    last = rows[-1]
    command = {"A": COMMAND_A, "B": COMMAND_B}[ckpt["config"]["net"]]
    ckpt["extra"] = {"command": command, "data": DATA,
                     "weights": f"moving average, decay {ckpt['ema_decay']} a step" if args.ema else "the weights",
                     "machine": f"{MACHINE}; {last['train_wall_s']:.0f} s of training",
                     "images_seen": int(last["images_seen"]), "history": rows}
    torch.save(ckpt, args.out)
    pre = "ema_" if args.ema else ""
    print(f"wrote {args.out}: step {ckpt['step']}, {int(last['images_seen']):,} images, {ckpt['extra']['weights']}, "
          f"held-out {last.get(pre + 'heldout_acc', float('nan')):.4f} clean / "
          f"{last.get(pre + 'heldout_hard_acc', float('nan')):.4f} damaged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
