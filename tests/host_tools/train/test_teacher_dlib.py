"""The real dlib teacher on real LFW faces through our 112x112 frame (skips without dlib or the shared data)."""
from __future__ import annotations

import numpy as np
import pytest

from wearface.host_tools.train import data as D
from wearface.host_tools.train import teacher as T


@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("dlib", reason="the dlib teacher needs the 'distill' extra (dlib-bin)")
    try:
        return T.Teacher()
    except T.TeacherMissingError as exc:
        pytest.skip(str(exc))


def test_teacher_puts_the_same_person_closer_than_different_people(teacher, shared_data):
    lfw_zip, pairs_path, _ = D.lfw_paths(shared_data / "lfw")
    pairs, lfw = D.read_pairs(pairs_path), D.LfwImages(lfw_zip)
    fold0 = [p for p in pairs.pairs if p.fold == 0]
    matched, mismatched = fold0[:6], fold0[pairs.n_per_half : pairs.n_per_half + 6]

    def dist(p):
        a, b = (teacher(lfw.crop112(n, i)) for n, i in ((p.name1, p.index1), (p.name2, p.index2)))
        assert a.shape == (128,) and a.dtype == np.float32
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        return float(np.linalg.norm(a - b))

    same = [dist(p) for p in matched]
    diff = [dist(p) for p in mismatched]
    assert max(same) < min(diff), (same, diff)


def test_teacher_refuses_a_non_rgb_image(teacher):
    with pytest.raises(D.DataError, match="uint8 RGB"):
        teacher(np.zeros((112, 112), np.uint8))


def test_lfw_check_command_scores_the_teacher_and_caches_it(teacher, shared_data, tmp_path, capsys):
    from wearface.host_tools.cli import main

    cache = tmp_path / "lfw.npz"
    assert main(["teacher", "lfw-check", "--lfw", str(shared_data / "lfw"), "--cache", str(cache), "--per-fold", "1",
                 "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "20 pairs" in out and "accuracy" in out
    assert len(T.load_cache(cache)) > 0
