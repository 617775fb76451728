"""How the board measures the distance to an enrolled person (issue 14, part 3): to the nearest of their enrolment
embeddings, or to their mean embedding (``Gallery`` with ``gallery_match`` "nearest" / "mean"); and θ by how many
images a person was enrolled from.

Reads the board-path embeddings ``experiments/score_norm.py`` caches (``--cache``: held-out identities clean and
damaged, the bundle's cohort) and decides with the bundle's cohort rule through ``heldout.open_set``, the
simulation ``wearface eval-heldout`` reports (galleries of P people x N enrolment images, 20 random galleries).

1. Each gallery shape, each match: the share of enrolled people named rightly at each half's own θ for 0.5% and 1% of
   strangers named (``heldout.choose_theta`` on that half; the two halves averaged): the rules compared without θ's
   transfer between halves.
2. θ chosen on the tune half for each enrolment count (≤ 0.5% strangers), the report half's figures at it and at
   the other counts' θ (strangers named / named right / named wrong).

    python3 experiments/score_norm.py models/default.wfb --data ../shared/data --cache runs/score_norm_1.7.npz
    python3 experiments/gallery_match.py --cache runs/score_norm_1.7.npz
"""
from __future__ import annotations

import argparse

import numpy as np

from wearface.host_tools.train import heldout as H

MATCHES = ("nearest", "mean")


def _own_theta_named(z, ids, halves, kind, shape, match, target) -> float:
    people, per = shape
    named = []
    for half in halves:
        kw = dict(people=people, per_person=per, cohort=z["cohort"], cohort_k=10, gallery_match=match)
        theta = H.choose_theta(z[kind][half], ids[half], target, **kw)
        named.append(H.open_set(z[kind][half], ids[half], theta, **kw).named_correctly)
    return float(np.mean(named))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="the .npz experiments/score_norm.py wrote")
    ap.add_argument("--strangers", type=float, default=0.005, help="stranger share θ may name on the tune half")
    args = ap.parse_args()
    z = dict(np.load(args.cache))
    ids = z["ids"]
    tune, report = H.tune_report_split(ids)
    print("1. named right at each half's own θ for 0.5% / 1% of strangers (two halves averaged)")
    print(f"{'people x images':<16} {'match':<8} {'clean':>15} {'damaged':>15}")
    for shape in ((40, 1), (40, 2), (40, 3), (20, 2), (20, 5), (50, 2)):
        for match in MATCHES:
            cells = [" / ".join(f"{100 * _own_theta_named(z, ids, (tune, report), kind, shape, match, t):5.2f}"
                                for t in (0.005, 0.01)) for kind in ("clean", "hard")]
            print(f"{shape[0]:>3} x {shape[1]:<10} {match:<8} {cells[0]:>15} {cells[1]:>15}", flush=True)
    print(f"\n2. θ on the tune half for each enrolment count (<= {args.strangers:.1%} strangers), report half at it "
          "(strangers named / named right / named wrong, clean | damaged)")
    for match in MATCHES:
        for per in (1, 2, 3, 5):
            kw = dict(people=40 if per < 5 else 25, per_person=per, cohort=z["cohort"], cohort_k=10,
                      gallery_match=match)
            theta = min(H.choose_theta(z[k][tune], ids[tune], args.strangers, **kw) for k in ("clean", "hard"))
            r = [H.open_set(z[k][report], ids[report], theta, **kw) for k in ("clean", "hard")]
            cells = " | ".join(f"{100 * o.strangers_named:.2f} / {100 * o.named_correctly:.2f} / "
                               f"{100 * o.named_wrongly:.2f}" for o in r)
            print(f"{match:<8} {kw['people']} x {per}: θ {theta:.4f}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
