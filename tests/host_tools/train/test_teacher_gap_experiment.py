"""experiments/teacher_gap.py: TAR by count of false accepts is the ROC's TAR at FAR = count / negatives."""
from __future__ import annotations

import numpy as np

from wearface.host_tools.train import evaluate as E


def test_tar_by_false_accepts_matches_the_roc_and_names_the_closest_mismatched_pairs():
    from experiments import teacher_gap as G

    rng = np.random.default_rng(0)
    same = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    rng.shuffle(same)
    dist = np.where(same, rng.normal(0.6, 0.15, same.size), rng.normal(1.1, 0.12, same.size))
    tars = G.tar_by_false_accepts(dist, same)
    assert len(tars) == G.FALSE_ACCEPTS and tars == sorted(tars) and tars[0] < tars[-1]
    assert tars[3] == E.tar_at_far(dist, same, 1e-3)  # 3 of 3,000: the protocol's FAR 1e-3
    names = [f"pair{i}" for i in range(same.size)]
    closest = G.closest_mismatched(dist, same, names, 3)
    neg = np.flatnonzero(~same)
    assert [n for n, _ in closest] == [names[i] for i in neg[np.argsort(dist[neg])[:3]]]
    assert closest[0][1] <= closest[1][1] <= closest[2][1]
