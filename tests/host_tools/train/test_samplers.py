"""samplers: P x K batches have p distinct identities with k images each; pair batches have the positive share."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.host_tools.errors import HostToolError
from wearface.host_tools.train.samplers import PairBatchSampler, PKBatchSampler


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=4, max_size=30), p=st.integers(2, 4), k=st.integers(2, 5),
       seed=st.integers(0, 9))
def test_pk_batches_have_p_identities_of_k_images(sizes, p, k, seed):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    if sum(1 for s in sizes if s >= 2) < p:
        with pytest.raises(HostToolError):
            PKBatchSampler(labels, p, k, 5, seed)
        return
    sampler = PKBatchSampler(labels, p, k, 5, seed)
    for batch in sampler:
        assert len(batch) == p * k
        ids = labels[batch]
        uniq, counts = np.unique(ids, return_counts=True)
        assert len(uniq) == p and set(counts) == {k}
        assert all(sizes[i] >= 2 for i in uniq)
        for i in uniq:  # no repeats unless the identity has fewer than k images
            picked = np.array(batch)[ids == i]
            if sizes[i] >= k:
                assert len(set(picked.tolist())) == k


def test_pk_sampler_is_deterministic_per_epoch_and_differs_between_epochs():
    labels = np.repeat(np.arange(20), 5)
    a, b = PKBatchSampler(labels, 4, 3, 6, seed=1), PKBatchSampler(labels, 4, 3, 6, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_pk_sampler_visits_identities_evenly():
    labels = np.repeat(np.arange(12), 4)
    seen = np.concatenate([labels[b] for b in PKBatchSampler(labels, 4, 2, 30, seed=0)])
    counts = np.bincount(seen, minlength=12) // 2
    assert counts.max() - counts.min() <= 1


def test_pair_batches_are_laid_out_as_pairs_with_the_positive_share():
    labels = np.repeat(np.arange(10), 3)
    for batch in PairBatchSampler(labels, 8, positive_fraction=0.25, n_batches=4, seed=0):
        a, b = labels[batch[0::2]], labels[batch[1::2]]
        assert len(batch) == 16 and int((a == b).sum()) == 2
        pos = [(batch[2 * j], batch[2 * j + 1]) for j in range(8) if a[j] == b[j]]
        assert all(i != j for i, j in pos)
