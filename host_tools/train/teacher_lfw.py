"""The teacher's own LFW View 2 accuracy, seen through our 112x112 crops and ``TEACHER_BOX_112``.

One job: check that the teacher we distil from is the 98.7% one (``shared/FINDINGS.md``), not a teacher
crippled by our framing.  Same protocol as ``evaluate.py`` (10 folds, threshold from the other 9), on the
first ``per_fold_half`` matched and mismatched pairs of each fold (0: all 6,000); distances between
L2-normalised descriptors, like the student's.
"""
from __future__ import annotations

import numpy as np

from . import data as D
from . import evaluate as E
from . import teacher as T
from .board_path_eval import subset_pairs


def lfw_key(name: str, index: int) -> str:
    return f"lfw:{name}:{index}"


def teacher_lfw_check(lfw_root: str, cache_path: str, per_fold_half: int = 30, workers: int = 0,
                      progress: bool = True) -> tuple[E.VerificationResult, int]:
    """(verification result, number of pairs) of the dlib teacher on LFW View 2 through our crops."""
    lfw_zip, pairs_path, _ = D.lfw_paths(lfw_root)
    pairs = subset_pairs(D.read_pairs(pairs_path), per_fold_half)
    lfw = D.LfwImages(lfw_zip)
    cache = T.load_cache(cache_path, missing_ok=True)
    keys = D.pair_images(pairs)
    T.compute_descriptors(cache, [(lfw_key(n, i), (lambda n=n, i=i: lfw.crop112(n, i))) for n, i in keys],
                          workers=workers, progress=progress)

    desc, found = cache.lookup([lfw_key(n, i) for n, i in keys])
    assert found.all()
    desc = desc / np.linalg.norm(desc, axis=1, keepdims=True)
    return E.score_pairs(desc, keys, pairs), len(pairs.pairs)
