"""Held-out identities: verification figures and the board's open-set decision, worked out on tiny embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from wearface.host_tools.errors import DataError
from wearface.host_tools.train.heldout import (
    choose_theta,
    cohort_scale,
    open_set,
    threshold_at_far,
    tune_report_split,
    verification,
)


def _clusters(n_ids=60, per_id=5, spread=0.05, seed=0):
    """Identity k sits at a random unit vector; its images within ``spread`` of it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.repeat(centres, per_id, axis=0) + rng.normal(0, spread, size=(n_ids * per_id, 64))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.repeat(np.arange(n_ids) + 1000, per_id)


def test_separated_clusters_verify_perfectly_and_overlapping_ones_do_not():
    emb, ids = _clusters()
    v = verification(emb, ids)
    assert v.balanced_accuracy == 1.0 and v.tar_at_far_1e3 == 1.0
    assert v.n_positive == 60 * 10 and v.n_negative == 300 * 299 // 2 - 600
    noisy = verification(*_clusters(spread=2.0))
    assert noisy.balanced_accuracy < 0.8


def test_threshold_at_far_counts_strangers_below_it():
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    same = np.array([True, False, False, False, False])
    assert threshold_at_far(dist, same, 0.0) == 0.2  # nothing accepted below the closest stranger
    assert threshold_at_far(dist, same, 0.5) == 0.4  # two of four strangers below
    with pytest.raises(DataError):
        threshold_at_far(dist, np.ones(5, bool), 0.1)


def test_open_set_names_people_and_refuses_strangers_at_a_good_theta():
    emb, ids = _clusters()
    r = open_set(emb, ids, theta=0.6, people=20, per_person=3, trials=3)
    assert r.strangers_named == 0.0 and r.named_correctly == 1.0 and r.named_wrongly == 0.0
    assert r.strangers == 40 * 5 and r.enrolled_probes == 20 * 2
    everyone = open_set(emb, ids, theta=10.0, people=20, per_person=3, trials=3)
    assert everyone.strangers_named == 1.0  # θ above every distance names every stranger


def test_choose_theta_meets_its_stranger_target_and_halves_are_disjoint():
    emb, ids = _clusters(spread=0.5)
    theta = choose_theta(emb, ids, strangers_named=0.02, people=20, trials=3)
    assert open_set(emb, ids, theta, people=20, trials=3).strangers_named <= 0.02
    assert open_set(emb, ids, theta + 0.2, people=20, trials=3).strangers_named > 0.02
    tune, report = tune_report_split(ids)
    assert not (set(ids[tune]) & set(ids[report])) and (tune | report).all()


def test_open_set_refuses_a_gallery_it_cannot_draw():
    emb, ids = _clusters(n_ids=5, per_id=2)
    with pytest.raises(DataError, match="identities"):
        open_set(emb, ids, 0.5, people=20)


def test_cohort_scale_is_the_kth_nearest_cohort_distance():
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    assert np.allclose(cohort_scale(emb, cohort, 1), [0.0, 0.0])
    assert np.allclose(cohort_scale(emb, cohort, 2), [np.sqrt(2), np.sqrt(2)])
    assert np.allclose(cohort_scale(emb, cohort, 3), [2.0, np.sqrt(2)])
    with pytest.raises(DataError, match="cohort"):
        cohort_scale(emb, cohort, 4)


def _padded(emb, extra):
    return np.hstack([emb, np.zeros((len(emb), extra))])


def test_a_cohort_at_the_same_distance_from_every_face_is_the_board_rule_at_a_scaled_theta():
    emb, ids = _clusters(spread=0.5)
    # cohort members on axes no face uses: each is sqrt(2) from every unit embedding, so the rule
    # distance / sqrt(2) < θ decides exactly as distance < θ * sqrt(2)
    cohort = np.eye(80)[64:]
    faces = _padded(emb, 16)
    for theta in (0.3, 0.5, 0.7):
        with_cohort = open_set(faces, ids, theta, people=20, trials=3, cohort=cohort, cohort_k=10)
        board = open_set(faces, ids, theta * np.sqrt(2), people=20, trials=3)
        assert with_cohort.as_dict() | {"theta": 0} == board.as_dict() | {"theta": 0}
    # and θ chosen under the cohort rule meets its stranger target on those images
    theta = choose_theta(faces, ids, strangers_named=0.02, people=20, trials=3, cohort=cohort)
    assert open_set(faces, ids, theta, people=20, trials=3, cohort=cohort).strangers_named <= 0.02
    assert theta > 0.5  # a ratio to sqrt(2), not a distance: the bisection reaches past the board's range



def test_open_set_with_mean_matching_decides_as_the_board_gallery(tmp_path):
    """``gallery_match="mean"``: each simulated decision is the one ``Gallery.match`` makes on the same gallery."""
    from wearface.firmware.gallery import Gallery

    emb, ids = _clusters(n_ids=30, per_id=4, spread=0.2, seed=2)
    emb = emb.astype(np.float32)
    people, per = 6, 2
    r = open_set(emb, ids, 1.2, people=people, per_person=per, trials=1, seed=5, gallery_match="mean")
    # the same draw as heldout._open_set's first trial
    rng = np.random.default_rng(5)
    u, counts = np.unique(ids, return_counts=True)
    enrolled = rng.choice(u[counts > per], people, replace=False)
    g = Gallery(tmp_path / "g.sqlite", "s", 1.2)
    g.set_model("s", 1.2, gallery_match="mean")
    probes = []
    for pid in enrolled:
        rows = rng.permutation(np.flatnonzero(ids == pid))
        g.add(str(pid), emb[rows[:per]])
        probes += [(r_, str(pid)) for r_ in rows[per:]]
    strangers = np.flatnonzero(~np.isin(ids, enrolled))
    named = np.mean([g.match(emb[i]).name is not None for i in strangers])
    right = np.mean([g.match(emb[i]).name == who for i, who in probes])
    assert (r.strangers_named, r.named_correctly) == pytest.approx((named, right), abs=1e-9)
    assert 0 < r.strangers_named < 1 and 0 < r.named_correctly < 1  # a figure that could differ
    nearest = open_set(emb, ids, 1.2, people=people, per_person=per, trials=1, seed=5)
    assert (nearest.strangers_named, nearest.named_correctly) != (r.strangers_named, r.named_correctly)
    with pytest.raises(DataError):
        open_set(emb, ids, 0.9, people=people, per_person=per, trials=1, gallery_match="median")
