"""The seed's hinge loss on embedding distances: the multibatch (all pairs) estimate and the k/2-pairs baseline.

Per pair (i, j): ``(1 - y_ij (θ - d_ij))_+`` with ``y_ij = +1`` for the same identity and ``-1`` otherwise,
``d_ij = |x_i - x_j|`` the Euclidean distance of the embeddings, **not squared**, as in the seed's slides.
Not squared because (a) the margin then is in the same units as θ and the distance, (b) the gradient of
``d`` with respect to an embedding has unit length whatever ``d`` is, so a close hard negative pushes as hard
as a far one (with ``d²`` its gradient vanishes as the points meet).  ``d`` is computed from the coordinate
differences (``torch.cdist`` without its matrix-product shortcut): the shortcut
``sqrt(|x_i|² + |x_j|² - 2 x_i·x_j)`` loses about 3e-4 of absolute accuracy in float32 for nearby unit
vectors, which is exactly where a freshly initialised net puts all its embeddings.

With L2-normalised embeddings ``d`` lies in [0, 2], and the hinge is zero for a positive pair when
``d < θ - 1`` and for a negative pair when ``d > θ + 1``: with θ = 1 (the default) positives always pull
and negatives push until they are antipodal.

Distance scale (option, default 1 = the seed's formula): the hinge sees ``s * d``.  On the unit sphere
``d <= 2``, so with s = 1 the margin of 1 on each side of θ can never be met by positives and negatives at
once and every pair keeps a constant-size gradient (a linear "pull positives, push negatives" objective).
Our 75-minute CPU run with s = 1 ended with 5% of the held-out negative pairs within d < 0.013 of each
other (clusters of identities collapsed onto one point).  With s = 4 and θ = 5 the hinge is zero for positives
closer than d = 1 and negatives farther than d = 1.5: a margin loss that stops pushing easy pairs.
Measured (docs/RESULTS.md): model A after 25,600 images reaches 74.1% LFW dev accuracy with s = 4, θ = 5,
against 62.2% with s = 1, θ = 1, everything else equal.

θ: fixed by default (``theta=1.0``); ``learn_theta=True`` makes it a parameter the optimizer updates (it then
goes in the checkpoint with the loss module's state dict).

Reductions: the seed writes sums; we return means (over the pairs used) so that the loss scale and the
learning rate do not depend on the batch size k.  ``weighting="uniform"`` (the faithful default) averages all
pairs alike; ``"balanced"`` averages the positive and the negative pair losses separately and returns
``(mean_pos + mean_neg) / 2`` (in a P x K batch only ~(K-1)/(k-1) of the pairs are positives; FINDINGS.md
records that uniform weighting did not learn with L2-normalised embeddings and balanced did; our GPU runs say the
opposite at distance scale 1: uniform 82.15% vs balanced 68.67% on LFW, docs/RESULTS.md).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import HostToolError

WEIGHTINGS = ("uniform", "balanced")


def pair_distances(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances (not squared) between rows of x (n, d) and rows of y (m, d) -> (n, m).

    The gradient at a zero distance is zero (``torch.cdist``'s convention) rather than NaN."""
    y = x if y is None else y
    return torch.cdist(x[None], y[None], p=2.0, compute_mode="donot_use_mm_for_euclid_dist")[0]


def hinge(d: torch.Tensor, same: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """The seed's per-pair loss ``(1 - y (θ - d))_+`` with ``y = +1`` where ``same`` else ``-1``."""
    y = same.to(d.dtype) * 2.0 - 1.0
    return torch.relu(1.0 - y * (theta - d))


def _reduce(losses: torch.Tensor, same: torch.Tensor, weighting: str) -> torch.Tensor:
    if weighting == "uniform":
        return losses.mean()
    pos, neg = losses[same], losses[~same]
    parts = [t.mean() for t in (pos, neg) if t.numel()]
    return torch.stack(parts).mean()


class _HingeBase(nn.Module):
    def __init__(self, theta: float = 1.0, learn_theta: bool = False, weighting: str = "uniform", distance_scale: float = 1.0):
        super().__init__()
        self.distance_scale = float(distance_scale)
        if weighting not in WEIGHTINGS:
            raise HostToolError(f"unknown loss weighting {weighting!r}; expected one of {WEIGHTINGS}")
        self.weighting = weighting
        if learn_theta:
            self.theta = nn.Parameter(torch.tensor(float(theta)))
        else:
            self.register_buffer("theta", torch.tensor(float(theta)))

    def extra_repr(self) -> str:
        return (f"theta={float(self.theta):.4g}, learned={isinstance(self.theta, nn.Parameter)}, weighting={self.weighting}, "
                f"distance_scale={self.distance_scale:g}")


class MultibatchLoss(_HingeBase):
    """All ``(k² - k) / 2`` unordered pairs of a batch of k embeddings (the seed's multibatch estimate).

    ``forward(embeddings (k, d) float, labels (k,) int) -> scalar``: the mean hinge over the pairs i < j
    (the ordered k² - k pairs give the same mean: d and y are symmetric).  ``uniform`` weighting is an
    unbiased estimate of the mean pair loss over the data when the batch is a uniform random subset.
    """

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        k = embeddings.shape[0]
        if k < 2:
            raise HostToolError(f"multibatch loss needs at least 2 embeddings, got {k}")
        iu = torch.triu_indices(k, k, offset=1, device=embeddings.device)
        d = pair_distances(embeddings)[iu[0], iu[1]]
        same = (labels[:, None] == labels[None, :])[iu[0], iu[1]]
        return _reduce(hinge(self.distance_scale * d, same, self.theta), same, self.weighting)


class PairsLoss(_HingeBase):
    """The baseline: the same hinge on k/2 disjoint pairs (0, 1), (2, 3), ... of a batch of k embeddings.

    ``forward(embeddings (k, d), labels (k,)) -> scalar`` mean over the k/2 pairs (``balanced``: positive and
    negative pairs averaged separately).  Lay the batch out as pairs (``samplers.PairBatchSampler``).
    """

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        k = embeddings.shape[0]
        if k < 2 or k % 2:
            raise HostToolError(f"pairs loss needs an even batch of at least 2 embeddings, got {k}")
        a, b = embeddings[0::2], embeddings[1::2]
        d = torch.sqrt(torch.clamp(((a - b) ** 2).sum(1), min=1e-12))
        same = labels[0::2] == labels[1::2]
        return _reduce(hinge(self.distance_scale * d, same, self.theta), same, self.weighting)


def build_loss(kind: str, theta: float = 1.0, learn_theta: bool = False, weighting: str = "balanced",
               distance_scale: float = 1.0) -> _HingeBase:
    """``kind``: ``multibatch`` or ``pairs``."""
    if kind == "multibatch":
        return MultibatchLoss(theta, learn_theta, weighting, distance_scale)
    if kind == "pairs":
        return PairsLoss(theta, learn_theta, weighting, distance_scale)
    raise HostToolError(f"unknown loss {kind!r}; expected 'multibatch' or 'pairs'")


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n, ...) from every rank along dim 0 (rank order), keeping the autograd graph.

    Backward sums the incoming gradients of all ranks for this rank's slice (``torch.distributed.nn``'s
    all_gather), so with the same loss on every rank each local embedding gets world_size x its gradient;
    DistributedDataParallel's averaging over ranks then gives exactly the single-process gradient.
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(all_gather(x), dim=0)


class GlobalBatchLoss(nn.Module):
    """Wraps a loss so that, under ``torch.distributed``, it sees the global batch: all ranks' embeddings and
    labels are gathered (equal local batch sizes) and the wrapped loss runs on the concatenation on every
    rank.  Single process: the wrapped loss unchanged.  ``.theta`` is the wrapped loss's."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    @property
    def theta(self):
        return self.loss.theta

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.loss(embeddings, labels)
        all_labels = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
        dist.all_gather(all_labels, labels)
        return self.loss(gather_with_grad(embeddings), torch.cat(all_labels))


class DistillationLoss(nn.Module):
    """Relational (all-pairs) distillation from a teacher's embeddings, plus an optional direct term.

    ``forward(student (k, d), teacher (k, d)) -> scalar``; both L2-normalised rows (the teacher's dlib
    descriptors are normalised once when loaded).  Terms:

    * relational: ``relational * mean_{i<j} (|s_i - s_j| - |t_i - t_j|)²`` — the student's all-pairs distance
      matrix matched to the teacher's: the multibatch idea applied to distillation, (k² - k)/2 targets for
      the price of k embeddings, and no identity labels needed.  Distances in [0, 2] (unit vectors).
    * direct: ``direct * mean_i (1 - cos(s_i, t_i))`` — pulls each embedding onto its teacher descriptor
      (both are 128-d); 0 disables it.

    Defaults (relational 2, direct 1) are the recipe measured in ``shared/FINDINGS.md`` (88.7% LFW after 40
    CPU-minutes on celeba_more alone).
    """

    def __init__(self, relational: float = 2.0, direct: float = 1.0):
        super().__init__()
        if relational < 0 or direct < 0 or relational + direct == 0:
            raise HostToolError(f"distillation weights must be >= 0 and not both 0, got relational={relational}, direct={direct}")
        self.relational, self.direct = float(relational), float(direct)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        k = student.shape[0]
        if teacher.shape != student.shape or k < 2:
            raise HostToolError(f"distillation needs matching (k >= 2, d) student and teacher batches, got "
                                f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        total = student.new_zeros(())
        if self.relational:
            iu = torch.triu_indices(k, k, offset=1, device=student.device)
            ds = pair_distances(student)[iu[0], iu[1]]
            dt = pair_distances(teacher)[iu[0], iu[1]]
            total = total + self.relational * ((ds - dt) ** 2).mean()
        if self.direct:
            total = total + self.direct * (1.0 - (student * teacher).sum(1)).mean()
        return total

    def extra_repr(self) -> str:
        return f"relational={self.relational:g}, direct={self.direct:g}"
