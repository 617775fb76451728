"""losses: hand-computed values and gradients on points of a circle; the multibatch estimate is unbiased."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from wearface.host_tools.train.losses import MultibatchLoss, PairsLoss, hinge, pair_distances


def _circle(angles_deg):
    a = torch.tensor([math.radians(t) for t in angles_deg], dtype=torch.float64)
    return torch.stack([torch.cos(a), torch.sin(a)], 1).requires_grad_(True)


def test_pair_distance_is_euclidean_not_squared():
    x = _circle([0, 90, 180])
    d = pair_distances(x).detach()
    np.testing.assert_allclose(d.numpy(), [[0, math.sqrt(2), 2], [math.sqrt(2), 0, math.sqrt(2)], [2, math.sqrt(2), 0]],
                               atol=1e-6)


def test_multibatch_on_three_points_of_a_circle_by_hand():
    # points at 0, 90, 180 degrees; labels: 0 and 90 are one person, 180 another; theta = 1
    x = _circle([0, 90, 180])
    labels = torch.tensor([0, 0, 1])
    loss = MultibatchLoss(theta=1.0, weighting="uniform")(x, labels)
    r2 = math.sqrt(2)
    # pair (0,1) same, d = r2: 1 - (1 - r2) = r2; pair (0,2) diff, d = 2: (1 + (1 - 2))_+ = 0;
    # pair (1,2) diff, d = r2: 1 + 1 - r2 = 2 - r2
    assert float(loss.detach()) == pytest.approx((r2 + 0 + (2 - r2)) / 3)
    loss.backward()
    # d/dx of |x_i - x_j| is the unit vector (x_i - x_j)/d; pos pair pulls (+d), neg pair (1,2) pushes (-d)
    u01 = (x[0] - x[1]).detach() / r2
    u12 = (x[1] - x[2]).detach() / r2
    expected = torch.stack([u01, -u01 - u12, u12]) / 3
    np.testing.assert_allclose(x.grad.numpy(), expected.numpy(), atol=1e-9)


def test_balanced_weighting_averages_positive_and_negative_pairs_separately():
    x = _circle([0, 90, 180])
    labels = torch.tensor([0, 0, 1])
    loss = MultibatchLoss(theta=1.0, weighting="balanced")(x, labels)
    r2 = math.sqrt(2)
    assert float(loss.detach()) == pytest.approx((r2 + (0 + 2 - r2) / 2) / 2)


def test_pairs_loss_uses_disjoint_consecutive_pairs():
    x = _circle([0, 60, 0, 180])  # pairs (0, 60 deg) same person, (0, 180 deg) different people
    labels = torch.tensor([3, 3, 4, 5])
    loss = PairsLoss(theta=1.0, weighting="uniform")(x, labels)
    d1 = 1.0  # chord of 60 degrees on the unit circle
    assert float(loss.detach()) == pytest.approx((max(0, 1 - (1 - d1)) + max(0, 1 + (1 - 2))) / 2)


def test_learned_theta_is_a_parameter_with_the_hinges_gradient():
    x = _circle([0, 90])
    loss_fn = MultibatchLoss(theta=1.0, learn_theta=True, weighting="uniform")
    assert [p for p in loss_fn.parameters()]
    loss_fn(x, torch.tensor([0, 0])).backward()  # positive pair: 1 - theta + d, d(loss)/d(theta) = -1
    assert float(loss_fn.theta.grad) == pytest.approx(-1.0)


def test_hinge_is_zero_beyond_the_margin():
    d = torch.tensor([0.0, 3.0])
    assert hinge(d, torch.tensor([True, False]), 1.5).tolist() == [0.0, 0.0]


def test_multibatch_uniform_estimate_is_unbiased_over_random_batches():
    """E over uniform random k-subsets of the mean pair loss in the batch == mean pair loss over the whole set."""
    rng = np.random.default_rng(0)
    n, k = 10, 4
    x = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    labels = torch.tensor(rng.integers(0, 3, size=n))
    loss_fn = MultibatchLoss(theta=1.0, weighting="uniform")
    full = float(loss_fn(x, labels))  # the mean over all n(n-1)/2 pairs of the data
    # exact expectation: every k-subset is equally likely
    subsets = list(itertools.combinations(range(n), k))
    exact = np.mean([float(loss_fn(x[list(s)], labels[list(s)])) for s in subsets])
    assert exact == pytest.approx(full, rel=1e-12)
    # Monte Carlo over random batches agrees within its standard error
    draws = [float(loss_fn(x[idx], labels[idx])) for idx in (torch.tensor(rng.choice(n, k, replace=False)) for _ in range(4000))]
    assert abs(np.mean(draws) - full) < 4 * np.std(draws) / math.sqrt(len(draws))


def test_distance_scale_multiplies_the_distance_inside_the_hinge():
    x = _circle([0, 90])  # d = sqrt(2)
    loss = MultibatchLoss(theta=5.0, weighting="uniform", distance_scale=4.0)(x, torch.tensor([0, 1]))
    assert float(loss.detach()) == pytest.approx(max(0.0, 1 + (5 - 4 * math.sqrt(2))))
