"""Decision rules for "unknown" on held-out CelebA identities (issue 14, part 3): which rule names the most
enrolled people at a fixed share of strangers named?

Embeds the held-out identities (the trainer's val split: fraction 0.05, seed 0) clean and camera-damaged
(``batch_augment.hard_copy``) with a float checkpoint, plus a cohort of 1,000 training identities (one image
each), then simulates wearer galleries (40 people x 3 enrolment images, 20 random galleries) and compares:

* ``global``: named iff d1 < τ (the board's rule today);
* ``cohort_probe``: d1 / (the probe's 10th-nearest cohort distance) < τ (score normalisation against strangers);
* ``cohort_person``: d1 / (the enrolled person's mean 10th-nearest cohort distance) < τ (per-person threshold);
* ``cohort_both``: d1 / sqrt(both) < τ.

τ is set on the *tune* half of the held-out identities so that 1% of strangers are named (the smaller of the
clean and damaged choices); the figures are on the *report* half.

    python3 experiments/decision_rules.py --checkpoint models/checkpoints/model_a_distill.pt --data ../shared/data
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from wearface.host_tools.train import data as D
from wearface.host_tools.train import evaluate as E
from wearface.host_tools.train import heldout as H
from wearface.host_tools.train.batch_augment import hard_copy
from wearface.host_tools.train.face_tensor import decode_all

K = 10
RULES = ("global", "cohort_probe", "cohort_person", "cohort_both")


def _dist(a, b):
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))


def simulate(gallery_emb, probe_emb, labels, mask, cohort, rule, trials=20, people=40, per=3, seed=0):
    """(stranger scores, probe scores, probe named-correctly-if-accepted flags) over ``trials`` galleries."""
    lab, eg, ep = labels[mask], gallery_emb[mask], probe_emb[mask]
    ids, counts = np.unique(lab, return_counts=True)
    eligible = ids[counts > per]
    rng = np.random.default_rng(seed)
    cp = np.sort(_dist(ep, cohort), 1)[:, K - 1]
    cg = np.sort(_dist(eg, cohort), 1)[:, K - 1]
    strangers, probes, right = [], [], []
    for _ in range(trials):
        enrolled, gal, own, pro = H.draw_gallery(rng, lab, eligible, people, per)
        person_c = np.array([cg[gal[own == k]].mean() for k in range(people)])

        def score(rows):
            d = _dist(ep[rows], eg[gal])
            pp = np.stack([d[:, own == k].min(1) for k in range(people)], 1)
            best = pp.argmin(1)
            d1 = pp[np.arange(len(rows)), best]
            return best, {"global": d1, "cohort_probe": d1 / cp[rows], "cohort_person": d1 / person_c[best],
                          "cohort_both": d1 / np.sqrt(cp[rows] * person_c[best])}[rule]

        strangers.append(score(np.flatnonzero(~np.isin(lab, enrolled)))[1])
        best, s = score(pro)
        slot = {p: k for k, p in enumerate(enrolled)}
        probes.append(s)
        right.append(best == np.array([slot[x] for x in lab[pro]]))
    return np.concatenate(strangers), np.concatenate(probes), np.concatenate(right)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--strangers", type=float, default=0.01)
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = D.load_celeba(args.data)
    train, val = D.split_by_identity(D.drop_singletons(records), 0.05, 0)
    clean = decode_all(val)
    hard = hard_copy(clean)
    rng = np.random.default_rng(0)
    pick = rng.choice(np.unique(train.identities), 1000, replace=False)
    cohort_rows = [int(rng.choice(np.flatnonzero(train.identities == p))) for p in pick]
    model, _ = E.load_checkpoint_model(args.checkpoint)
    embed = E.torch_embedder(model)

    def emb(x):
        return np.concatenate([embed(x[s:s + 256]) for s in range(0, len(x), 256)])

    e_clean, e_hard, cohort = emb(clean), emb(hard), emb(decode_all(train.subset(cohort_rows)))
    ids = val.identities
    tune, report = H.tune_report_split(ids)
    head = [f"{n + ': strangers / named right / wrong':<44}" for n in ("clean", "damaged")]
    print(f"{'rule':<14} {'tau':>6}  " + "  ".join(head))
    for rule in RULES:
        tau = min(np.quantile(simulate(e, e, ids, tune, cohort, rule)[0], args.strangers) for e in (e_clean, e_hard))
        cells = []
        for e in (e_clean, e_hard):
            s, p, ok = simulate(e, e, ids, report, cohort, rule)
            cells.append(f"{100 * (s < tau).mean():5.1f}% / {100 * ((p < tau) & ok).mean():5.1f}% / "
                         f"{100 * ((p < tau) & ~ok).mean():5.2f}%")
        print(f"{rule:<14} {tau:6.3f}  " + "  ".join(f"{c:<44}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
