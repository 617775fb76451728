"""Batch samplers over integer identity labels: identity-balanced P x K batches, and k/2-pair batches.

No torch import: a sampler is any iterable of index lists (``torch.utils.data.DataLoader(batch_sampler=...)``
accepts it).  Every sampler is deterministic given ``(seed, epoch)``: call ``set_epoch`` before iterating.
"""
from __future__ import annotations

import numpy as np

from ..errors import HostToolError


def _groups(labels: np.ndarray) -> dict[int, np.ndarray]:
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    ids, starts = np.unique(labels[order], return_index=True)
    ends = list(starts[1:]) + [len(order)]
    return {int(i): order[s:e] for i, s, e in zip(ids, starts, ends)}


class PKBatchSampler:
    """Batches of ``p`` distinct identities x ``k`` images each (batch size p*k), every batch has positives.

    Only identities with 2 or more images are drawn; negative labels mean "no identity" and are never drawn.  Identities are
    visited in a random order without
    replacement (re-shuffled when exhausted); within an identity, images are drawn without replacement if it
    has at least ``k``, else with replacement (so a small identity can repeat an image within a batch).
    ``n_batches`` per epoch (default: images // (p*k)).
    """

    def __init__(self, labels, p: int, k: int, n_batches: int | None = None, seed: int = 0):
        if p < 2 or k < 2:
            raise HostToolError(f"P x K sampler needs p >= 2 identities and k >= 2 images each, got {p} x {k}")
        self.groups = {i: g for i, g in _groups(labels).items() if i >= 0 and len(g) >= 2}
        if len(self.groups) < p:
            raise HostToolError(f"P x K sampler: only {len(self.groups)} identities have 2+ images, batch needs p={p}")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        self.n_batches = n_batches if n_batches is not None else max(1, len(np.asarray(labels)) // (p * k))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        ids = np.array(sorted(self.groups))
        queue: list[int] = []
        for _ in range(self.n_batches):
            if len(queue) < self.p:
                queue.extend(rng.permutation(ids).tolist())
            chosen, queue = queue[: self.p], queue[self.p :]
            if len(set(chosen)) < self.p:  # a reshuffle boundary repeated an identity: draw fresh ones
                chosen = rng.choice(ids, size=self.p, replace=False).tolist()
            batch = []
            for ident in chosen:
                g = self.groups[ident]
                batch.extend(rng.choice(g, size=self.k, replace=len(g) < self.k).tolist())
            yield batch


class PairBatchSampler:
    """Batches of ``n_pairs`` pairs laid out as (a0, b0, a1, b1, ...): the k/2-pairs baseline's input.

    A fraction ``positive_fraction`` of the pairs are two different images of one identity, the rest are
    images of two different identities (both drawn uniformly over identities).
    """

    def __init__(self, labels, n_pairs: int, positive_fraction: float = 0.5, n_batches: int | None = None, seed: int = 0):
        if n_pairs < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise HostToolError(f"pair sampler: need n_pairs >= 1 and 0 <= positive_fraction <= 1, got {n_pairs}, "
                                f"{positive_fraction}")
        self.groups = _groups(labels)
        self.multi = np.array(sorted(i for i, g in self.groups.items() if len(g) >= 2))
        self.ids = np.array(sorted(self.groups))
        if len(self.multi) == 0 or len(self.ids) < 2:
            raise HostToolError("pair sampler needs an identity with 2+ images and at least 2 identities")
        self.n_pairs, self.positive_fraction, self.seed, self.epoch = n_pairs, positive_fraction, seed, 0
        self.n_batches = n_batches if n_batches is not None else max(1, len(np.asarray(labels)) // (2 * n_pairs))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        n_pos = int(round(self.positive_fraction * self.n_pairs))
        for _ in range(self.n_batches):
            batch = []
            for j in range(self.n_pairs):
                if j < n_pos:
                    g = self.groups[int(rng.choice(self.multi))]
                    batch.extend(rng.choice(g, size=2, replace=False).tolist())
                else:
                    a, b = rng.choice(self.ids, size=2, replace=False)
                    batch.extend([int(rng.choice(self.groups[int(a)])), int(rng.choice(self.groups[int(b)]))])
            order = rng.permutation(self.n_pairs)  # mix positive and negative pairs within the batch
            yield [batch[2 * o + s] for o in order for s in (0, 1)]


class MixedBatchSampler:
    """A P x K batch plus ``extra`` images drawn uniformly from ``pool`` (indices of images the P x K draw
    never picks: singletons, faces without identity labels).  For distillation, whose relational term wants
    every face while the hinge wants positives.  Deterministic given ``(seed, epoch)`` like the P x K sampler."""

    def __init__(self, pk: PKBatchSampler, pool, extra: int, seed: int = 0):
        self.pk, self.pool, self.extra, self.seed = pk, np.asarray(pool, dtype=np.int64), int(extra), seed
        if self.extra < 0 or (self.extra and not len(self.pool)):
            raise HostToolError(f"mixed batches: cannot draw {extra} extra images from a pool of {len(self.pool)}")

    @property
    def epoch(self) -> int:
        return self.pk.epoch

    def set_epoch(self, epoch: int) -> None:
        self.pk.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.pk)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.pk.epoch, 7])
        for batch in self.pk:
            if self.extra:
                batch = batch + rng.choice(self.pool, size=self.extra, replace=len(self.pool) < self.extra).tolist()
            yield batch


class UniformBatchSampler:
    """Batches of ``batch`` indices drawn uniformly without replacement from ``range(n)`` (re-shuffled when
    exhausted): no label involved, for distillation without identities."""

    def __init__(self, n: int, batch: int, n_batches: int | None = None, seed: int = 0):
        if batch < 2 or n < batch:
            raise HostToolError(f"uniform batches of {batch} need at least {batch} images, have {n}")
        self.n, self.batch, self.seed, self.epoch = n, batch, seed, 0
        self.n_batches = n_batches if n_batches is not None else n // batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 3])
        usable = self.n - self.n % self.batch  # whole batches per shuffle; the leftover waits for the next one
        order = rng.permutation(self.n)
        for b in range(self.n_batches):
            s = (b * self.batch) % usable
            if s == 0 and b:
                order = rng.permutation(self.n)
            yield order[s : s + self.batch].tolist()
