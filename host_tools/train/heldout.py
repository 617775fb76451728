"""Held-out CelebA identities: the set where checkpoints, θ and every decision rule are chosen (never LFW).

One job: score embeddings of identities the net never trained on, two ways.

* **Verification** over all pairs of the held-out images: accuracy at the best threshold (positives and
  negatives weighted equally, since negatives outnumber positives ~100:1), TAR at FAR 1e-3, and the
  threshold that gives a target FAR.
* **Open set, as a wearer lives it** (``open_set``): a gallery of ``people`` identities with ``per_person``
  enrolment images each; every other image of an enrolled person is a probe that should be named correctly,
  every image of a non-enrolled identity is a stranger who should be "unknown".  The decision is the board's
  (``firmware.gallery.Gallery.match`` rule: nearest enrolled person by Euclidean distance, named iff the
  distance < θ), computed here in numpy on the same embeddings.  With a ``cohort`` (embeddings of strangers to
  everyone: other identities than the ones scored) the rule is the cohort-normalised one that
  ``experiments/decision_rules.py`` measured in float: named iff distance / (the probe's ``cohort_k``-th nearest
  cohort distance) < θ.  A probe that lies near many faces (a blurred, dark or generic face) needs to be that
  much nearer its enrolled person; not yet the board's rule.

The held-out identities are split in two halves by identity (``tune_report_split``): θ is chosen on the
*tune* half and reported on the *report* half, so no reported figure chose its own threshold.

Shapes: embeddings (N, D) float, L2-normalised; labels (N,) int identity numbers.  No torch import.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError


def _pair_distances(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle distances (n²-n)/2 and same-identity flags."""
    e = np.asarray(emb, dtype=np.float64)
    sq = np.sum(e * e, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * e @ e.T
    iu = np.triu_indices(len(e), 1)
    return np.sqrt(np.maximum(d2[iu], 0.0)), labels[iu[0]] == labels[iu[1]]


@dataclass
class Verification:
    balanced_accuracy: float  # at its own best threshold (selection metric, not a report)
    best_threshold: float
    tar_at_far_1e3: float
    threshold_at_far_1e3: float
    threshold_at_far_1e2: float
    n_positive: int
    n_negative: int

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_at_far(dist: np.ndarray, same: np.ndarray, far: float) -> float:
    """The largest θ with (strangers' pairs with distance < θ) / strangers' pairs <= ``far``."""
    neg = np.sort(dist[~same])
    if len(neg) == 0:
        raise DataError("no negative pairs: need at least two identities")
    k = int(np.floor(far * len(neg)))
    return float(neg[k]) if k < len(neg) else float(neg[-1] + 1e-6)


def verification(emb: np.ndarray, labels: np.ndarray) -> Verification:
    dist, same = _pair_distances(emb, np.asarray(labels))
    if same.sum() == 0:
        raise DataError("no positive pairs: every identity needs at least two images")
    order = np.argsort(dist, kind="stable")
    s = same[order]
    tpr = np.concatenate([[0.0], np.cumsum(s) / s.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(~s) / (~s).sum()])
    bal = 0.5 * (tpr + 1.0 - fpr)
    i = int(np.argmax(bal))
    d = dist[order]
    best = float(d[0] - 1e-6) if i == 0 else float((d[i - 1] + d[min(i, len(d) - 1)]) / 2)
    ok = fpr <= 1e-3 + 1e-12
    return Verification(float(bal[i]), best, float(tpr[ok].max()), threshold_at_far(dist, same, 1e-3),
                        threshold_at_far(dist, same, 1e-2), int(same.sum()), int((~same).sum()))


def tune_report_split(labels: np.ndarray, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(tune mask, report mask) over images: half of the identities each, fixed by ``seed``."""
    ids = np.unique(labels)
    rng = np.random.default_rng(seed)
    tune_ids = rng.permutation(ids)[: len(ids) // 2]
    tune = np.isin(labels, tune_ids)
    return tune, ~tune


@dataclass
class OpenSet:
    theta: float
    people: int
    per_person: int
    strangers: int  # stranger images probed
    strangers_named: float  # share of stranger images given a name (any name): the worst failure
    enrolled_probes: int
    named_correctly: float  # share of enrolled people's other images given their own name
    named_wrongly: float  # share of enrolled people's images given someone else's name
    trials: int

    def as_dict(self) -> dict:
        return asdict(self)


def cohort_scale(emb: np.ndarray, cohort: np.ndarray, k: int) -> np.ndarray:
    """(N,) each embedding's ``k``-th nearest distance to the ``cohort`` (M, D) embeddings (k = 1: nearest)."""
    from wearface.firmware.gallery import cohort_distance  # the board's own formula

    cohort = np.asarray(cohort, dtype=np.float32)
    if cohort.ndim != 2 or not 1 <= k <= len(cohort):
        raise DataError(f"cohort: need (M, D) embeddings with M >= k = {k}, got shape {cohort.shape}")
    # a face equal to k cohort members has scale 0: never named (its ratio is infinite), without a warning
    return np.maximum(cohort_distance(emb, cohort, k), 1e-12)


def open_set(emb: np.ndarray, labels: np.ndarray, theta: float, people: int = 40, per_person: int = 3,
             trials: int = 20, seed: int = 0, cohort: np.ndarray | None = None, cohort_k: int = 10,
             gallery_match: str = "nearest") -> OpenSet:
    """The board's decision on a wearer-like gallery, averaged over ``trials`` random galleries.

    Enrolled people are drawn among identities with more than ``per_person`` images; each enrols
    ``per_person`` random images; all identities not drawn are strangers.  ``cohort``: decide on distance /
    ``cohort_scale`` (module docstring) instead of the distance.  ``gallery_match``: the distance to a person is
    to their nearest enrolment image ("nearest") or to their mean embedding ("mean"), as ``Gallery.match``."""
    scale = cohort_scale(emb, cohort, cohort_k) if cohort is not None else None
    return _open_set(emb, labels, theta, people, per_person, trials, seed, scale, gallery_match)


def draw_gallery(rng: np.random.Generator, labels: np.ndarray, eligible: np.ndarray, people: int,
                 per_person: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One random wearer gallery: (enrolled identities (people,), gallery rows, their owners 0..people-1, the
    enrolled people's other rows: the probes).  Each enrols ``per_person`` of their images at random."""
    enrolled = rng.choice(eligible, people, replace=False)
    gal_rows, owners, probe_rows = [], [], []
    for k, pid in enumerate(enrolled):
        rows = rng.permutation(np.flatnonzero(labels == pid))
        gal_rows += list(rows[:per_person])
        owners += [k] * per_person
        probe_rows += list(rows[per_person:])
    return enrolled, np.asarray(gal_rows, np.int64), np.asarray(owners, np.int64), np.asarray(probe_rows, np.int64)


def _open_set(emb, labels, theta: float, people: int, per_person: int, trials: int, seed: int,
              scale: np.ndarray | None, gallery_match: str = "nearest") -> OpenSet:
    """``open_set`` with each embedding's divisor given (None: 1, the board's rule)."""
    from wearface.firmware.gallery import GALLERY_MATCHES, _templates  # the board's own templates

    if gallery_match not in GALLERY_MATCHES:
        raise DataError(f"open set: gallery_match {gallery_match!r} (expected one of {GALLERY_MATCHES})")
    labels = np.asarray(labels)
    e = np.asarray(emb, dtype=np.float32)
    scale = np.ones(len(e), np.float32) if scale is None else scale
    ids, counts = np.unique(labels, return_counts=True)
    eligible = ids[counts > per_person]
    if len(eligible) < people or len(ids) - people < 1:
        raise DataError(f"open set: {len(eligible)} identities with > {per_person} images (need {people}) "
                        f"and at least one stranger among {len(ids)} identities")
    rng = np.random.default_rng(seed)
    named_s, ok_p, wrong_p, n_s, n_p = [], [], [], 0, 0
    for _ in range(trials):
        enrolled, gal_rows, owners, probe_rows = draw_gallery(rng, labels, eligible, people, per_person)
        stranger_rows = np.flatnonzero(~np.isin(labels, enrolled))
        gallery = e[gal_rows]
        if gallery_match == "mean":
            gallery, owners = _templates(gallery, owners, people), np.arange(people)

        def decide(rows):
            d = np.sqrt(np.maximum(((e[rows][:, None, :] - gallery[None, :, :]) ** 2).sum(-1), 0.0))
            per_person_d = np.full((len(rows), people), np.inf, np.float32)
            for k in range(people):
                per_person_d[:, k] = d[:, owners == k].min(axis=1)
            best = per_person_d.argmin(axis=1)
            return best, per_person_d[np.arange(len(rows)), best] / scale[rows] < theta

        _, named = decide(stranger_rows)
        named_s.append(named.mean())
        best, named = decide(np.asarray(probe_rows))
        slot = {pid: k for k, pid in enumerate(enrolled)}
        truth = np.array([slot[p] for p in labels[probe_rows]])
        ok_p.append(np.mean(named & (best == truth)))
        wrong_p.append(np.mean(named & (best != truth)))
        n_s, n_p = len(stranger_rows), len(probe_rows)
    return OpenSet(float(theta), people, per_person, n_s, float(np.mean(named_s)), n_p, float(np.mean(ok_p)),
                   float(np.mean(wrong_p)), trials)


def choose_theta(emb: np.ndarray, labels: np.ndarray, strangers_named: float = 0.01, people: int = 40,
                 per_person: int = 3, trials: int = 20, seed: int = 0, cohort: np.ndarray | None = None,
                 cohort_k: int = 10, gallery_match: str = "nearest") -> float:
    """The largest θ (most people named) whose open-set stranger rate on these images is <= the target.

    Bisection on θ: the stranger rate grows with θ.  Distances of unit vectors are <= 2; with a ``cohort`` θ
    bounds a ratio of two distances, searched up to 8."""
    lo, hi = 0.0, 2.0 if cohort is None else 8.0
    scale = cohort_scale(emb, cohort, cohort_k) if cohort is not None else None  # once, not per bisection step
    for _ in range(24):
        mid = (lo + hi) / 2
        rate = _open_set(emb, labels, mid, people, per_person, trials, seed, scale, gallery_match).strangers_named
        lo, hi = (mid, hi) if rate <= strangers_named else (lo, mid)
    return lo
