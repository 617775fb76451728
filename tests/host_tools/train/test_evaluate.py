"""evaluate: threshold choice, k-fold protocol, ROC and TAR at FAR on hand-made distances."""
from __future__ import annotations

import numpy as np
import pytest

from wearface.host_tools.train.evaluate import best_threshold, kfold_accuracy, roc, tar_at_far


def test_best_threshold_separates_separable_distances():
    dist = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    same = np.array([True, True, True, False, False])
    assert best_threshold(dist, same) == pytest.approx(0.6)


def test_kfold_threshold_comes_from_the_other_folds():
    # fold 0's own best threshold would be 0.5; the other folds say 0.25, so fold 0 loses one pair
    dist = np.array([0.2, 0.3, 0.2, 0.3, 0.4, 0.6])
    same = np.array([True, False, True, False, True, False])
    folds = np.array([1, 1, 2, 2, 0, 0])
    accs, ths = kfold_accuracy(dist, same, folds)
    assert ths[0] == pytest.approx(0.25)
    assert accs.tolist() == [0.5, 1.0, 1.0]


def test_roc_and_tar_at_far():
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([True, True, False, True, False, False])
    far, tar = roc(dist, same)
    assert far[0] == 0 and tar[-1] == 1 and far[-1] == 1
    assert tar_at_far(dist, same, 0.0) == pytest.approx(2 / 3)
    assert tar_at_far(dist, same, 1 / 3) == pytest.approx(1.0)
