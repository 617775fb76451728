"""experiments/theta_split_noise.py: its per-identity count of named strangers is ``heldout.open_set``'s decision
(the eval-heldout figures), gallery by gallery."""
from __future__ import annotations

import numpy as np
import pytest

from wearface.host_tools.train import heldout as H


@pytest.mark.parametrize("match, theta, cohort_k", [("mean", 0.9, 0), ("nearest", 0.9, 0), ("mean", 0.8, 10)])
def test_named_strangers_are_the_open_set_decision(match, theta, cohort_k):
    from experiments import theta_split_noise as T

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(50), 4)  # every identity 4 images: each gallery leaves as many stranger images
    emb = rng.normal(size=(50, 16))[labels] + 0.8 * rng.normal(size=(len(labels), 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    cohort = rng.normal(size=(100, 16)).astype(np.float32)
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    kw = dict(cohort=cohort, cohort_k=cohort_k) if cohort_k else {}
    scale = H.cohort_scale(emb, cohort, cohort_k) if cohort_k else np.ones(len(emb), np.float32)
    named = T.stranger_counts(emb, labels, theta, 15, 2, scale, match)
    probed = named.pop(None)
    ref = H.open_set(emb, labels, theta, people=15, per_person=2, gallery_match=match, **kw)
    assert probed == 20 * 35 * 4 and sum(named.values()) / probed == pytest.approx(ref.strangers_named, abs=1e-12)
    assert 0 < ref.strangers_named < 1 and len(named) > 1  # the test would see a difference
