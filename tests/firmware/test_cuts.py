"""Cuts (``[detector] cut_fraction``): when the picture changes as a whole (a new shot, the wearer turning away), every
track ends, so that no name carries over to whoever now stands where a track was.  Behaviour only, never speed."""
from __future__ import annotations

import re

import numpy as np
import pytest

from wearface.firmware import events as ev
from wearface.firmware import scene
from wearface.firmware.board import parse_board
from wearface.firmware.errors import BoardFileError
from wearface.firmware.facemodel import FaceModel
from wearface.firmware.search import SearchPlanner

from .conftest import make_board, run_loop

CUT_AT = 10


def _two_shots(n=20):
    """A face on one background, then from frame ``CUT_AT`` a face at nearly the same place in another shot (the
    whole background 60 grey levels brighter): where a tracker matching boxes would continue the first track."""
    face = scene.grace_hopper_face()
    first = scene.background(640, 480)
    second = np.clip(scene.background(640, 480, seed=1).astype(np.int16) + 60, 0, 255).astype(np.uint8)
    frames = []
    for k in range(n):
        x = 0.40 if k < CUT_AT else 0.42
        actors = [scene.Actor(face, start=0, stop=None, from_xy=(x, 0.5), to_xy=(x, 0.5), size_px=(150, 150))]
        frames.append(scene.render(actors, 0, 1, base=first if k < CUT_AT else second)[0])
    return frames


def _run(tmp_path, shipped_bundle, cut_fraction):
    board = make_board(tmp_path, detector={"every_frames": 4, "cut_fraction": cut_fraction})
    return run_loop(tmp_path, board, FaceModel(board, shipped_bundle), shipped_bundle, _two_shots())


def test_a_cut_ends_every_track_and_the_face_after_it_is_a_new_track(tmp_path, shipped_bundle):
    pipeline, ids, events = _run(tmp_path, shipped_bundle, 0.3)
    before, after = ids[CUT_AT - 1], ids[CUT_AT]
    assert len(before) == 1 and len(after) == 1 and before != after, ids
    left = [e for e in events if e["event"] == ev.PERSON_LEFT]
    assert [e["track"] for e in left] == before  # published as gone, at the cut
    assert pipeline.stats()["cuts"] == 1
    assert all(i == after for i in ids[CUT_AT:])  # one cut, not one per frame


def test_without_cuts_the_track_runs_on_into_the_next_shot(tmp_path, shipped_bundle):
    """The behaviour the setting changes: the box at nearly the same place continues the first shot's track."""
    pipeline, ids, _ = _run(tmp_path, shipped_bundle, 0.0)
    assert ids[CUT_AT - 1] == ids[CUT_AT] == ids[-1], ids
    assert pipeline.stats()["cuts"] == 0


def test_the_planner_calls_a_cut_only_when_most_of_the_picture_changed(tmp_path):
    board = make_board(tmp_path, detector={"every_frames": 4, "cut_fraction": 0.3,
                                                       "roi_on_change": False})
    planner = SearchPlanner(board.detector)
    frame = scene.background(640, 480)
    plans = [planner.plan(frame, 0, [])]
    moved = frame.copy()
    moved[:100, :200] = 255  # ~7% of the picture: a change, not a cut
    plans.append(planner.plan(moved, 1, []))
    plans.append(planner.plan(np.clip(moved.astype(np.int16) + 60, 0, 255).astype(np.uint8), 2, []))
    plans.append(planner.plan(np.clip(moved.astype(np.int16) + 60, 0, 255).astype(np.uint8), 3, []))
    plans.append(planner.plan(np.clip(moved.astype(np.int16) + 60, 0, 255).astype(np.uint8), 4, []))
    assert [(p.full, p.cut) for p in plans] == [(True, False), (False, False), (True, True), (False, False),
                                                 (True, False)]  # the schedule's slot (frame 4) stays


def test_a_bad_cut_fraction_is_named(tmp_path):
    make_board(tmp_path)
    text = re.sub(r"(?m)^cut_fraction = .*\n", "", (tmp_path / "virtual.toml").read_text())
    for value in ("1.0", "-0.1"):
        bad = text.replace("[detector]\n", f"[detector]\ncut_fraction = {value}\n")
        with pytest.raises(BoardFileError, match=r"detector\.cut_fraction"):
            parse_board(bad, tmp_path / "bad.toml")
