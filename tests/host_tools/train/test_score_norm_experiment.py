"""experiments/score_norm.py: its open-set simulation agrees with ``heldout.open_set`` (the eval-heldout figures)
for the board's two rules, and its symmetric rules are symmetric."""
from __future__ import annotations

import numpy as np
import pytest

from wearface.host_tools.train import heldout as H


def _faces(seed=0, people=60, per=5, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    labels = np.repeat(np.arange(people), per)
    emb = centres[labels] + 0.8 * rng.normal(size=(len(labels), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cohort = rng.normal(size=(200, dim))
    return emb.astype(np.float32), labels, (cohort / np.linalg.norm(cohort, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("rule, theta", [("distance", 0.9), ("probe_k10", 0.8), ("probe_k10", 0.6)])
def test_open_set_matches_the_heldout_module(rule, theta):
    from experiments import score_norm as S

    emb, labels, cohort = _faces()
    mine = S.rates(S.open_set_scores(emb, labels, S.Rule(rule, cohort), people=20, per_person=3), theta)
    kw = dict(cohort=cohort, cohort_k=10) if rule != "distance" else {}
    ref = H.open_set(emb, labels, theta, people=20, per_person=3, **kw)
    assert mine == pytest.approx((ref.strangers_named, ref.named_correctly, ref.named_wrongly), abs=1e-9)
    assert 0 < ref.strangers_named < 1  # the test would see a difference


@pytest.mark.parametrize("rule", ["sym_k5", "asnorm_N50"])
def test_symmetric_rules_do_not_depend_on_which_face_is_the_probe(rule):
    from experiments import score_norm as S

    emb, _, cohort = _faces(1)
    r = S.Rule(rule, cohort)
    st = r.stats(emb)
    sc = r.score(S._dist(emb, emb), st, st)
    np.testing.assert_allclose(sc, sc.T, atol=1e-9)
    probe = S.Rule("probe_k5", cohort)
    ps = probe.stats(emb)
    assert not np.allclose(probe.score(S._dist(emb, emb), ps, ps), probe.score(S._dist(emb, emb), ps, ps).T)
