"""Still frames (``[detector] still_grey_levels``): a frame showing the picture the loop last worked on is skipped,
its tracks kept as they were; a moving face is never still; a slow drift is worked on once it adds up.
Behaviour only, never speed."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from wearface.firmware import events as ev
from wearface.firmware import scene
from wearface.firmware.board import parse_board
from wearface.firmware.camera import IterableSource
from wearface.firmware.errors import BoardFileError
from wearface.firmware.facemodel import FaceModel
from wearface.firmware.gallery import Gallery
from wearface.firmware.pipeline import Pipeline
from wearface.firmware.search import SearchPlanner

from .conftest import boards_dir, make_board


def _loop(tmp_path, shipped_bundle, frames, levels):
    board = make_board(tmp_path, detector={"every_frames": 4, "roi_on_change": True, "still_grey_levels": levels},
                       tracker={"max_embeds_per_frame": 1})
    gallery = Gallery(tmp_path / "g.sqlite", str(shipped_bundle.embedding_space), float(shipped_bundle.threshold))
    events = []
    bus = ev.EventBus()
    bus.subscribe(events.append)
    pipeline = Pipeline(board, FaceModel(board, shipped_bundle), gallery, bus, IterableSource(frames))
    after = []
    for frame in frames:
        pipeline.step(frame)
        after.append({tr.id: tr.box for tr in pipeline.tracker.tracks.values()})
    gallery.close()
    return pipeline, after, events


def _noisy(frame, rng, amplitude=6):
    """``frame`` with per-pixel noise of +-``amplitude`` grey levels: a repeat as a video codec decodes it."""
    noise = rng.integers(-amplitude, amplitude + 1, frame.shape)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _walking_face(n):
    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(0.3, 0.5), to_xy=(0.7, 0.5), size_px=(140, 140))]
    return [frame for frame, _ in (scene.render(actors, k, n) for k in range(n))]


def test_a_repeated_frame_is_skipped_and_its_tracks_kept(tmp_path, shipped_bundle):
    rng = np.random.default_rng(0)
    moving = _walking_face(24)  # ~7 px a frame
    frames, repeats = [], []
    for k, frame in enumerate(moving):
        frames.append(frame)
        if k % 4 == 3:  # as 24 -> 30 fps video repeats a frame, with the codec's noise
            frames.append(_noisy(frame, rng))
            repeats.append(len(frames) - 1)
    pipeline, after, events = _loop(tmp_path, shipped_bundle, frames, 8.0)
    assert pipeline.counts["still_frames"] == len(repeats)
    for i in repeats:
        assert after[i] == after[i - 1]  # same track ids, same boxes
    assert {tid for frame in after for tid in frame} == {1}
    assert pipeline.stats()["still_frames"] == len(repeats)
    # the same video with the setting off works on every frame and sees the same one person
    off, after_off, _ = _loop(tmp_path / "off", shipped_bundle, frames, 0.0)
    assert off.counts["still_frames"] == 0
    assert {tid for frame in after_off for tid in frame} == {1}


def test_a_moving_face_is_never_still(tmp_path, shipped_bundle):
    pipeline, after, _ = _loop(tmp_path, shipped_bundle, _walking_face(20), 8.0)
    assert pipeline.counts["still_frames"] == 0
    assert all(frame for frame in after[1:])


def test_a_slow_drift_is_compared_with_the_last_frame_worked_on():
    # a faint square (30 grey levels over its background) moving one pixel a frame: one step moves an 8x8 cell's
    # mean by ~4 levels, under the threshold, but the steps add up
    board = make_board(Path("/nonexistent"), detector={"every_frames": 4, "still_grey_levels": 8.0})
    planner = SearchPlanner(board.detector)
    worked = []
    for k in range(40):
        frame = np.full((240, 320, 3), 60, np.uint8)
        frame[100:140, 100 + k:140 + k] = 90
        if not planner.still(frame):
            planner.plan(frame, k, [])
            worked.append(k)
    gaps = np.diff(worked)
    assert worked[0] == 0 and len(worked) > 5  # it is worked on again and again as it moves
    assert gaps.max() <= 8 and (gaps > 1).any()  # some frames skipped, never a long run of them


def test_the_first_frame_and_a_setting_of_zero_are_never_still():
    board = make_board(Path("/nonexistent"), detector={"still_grey_levels": 0.0})
    frame = np.zeros((48, 64, 3), np.uint8)
    planner = SearchPlanner(board.detector)
    assert not planner.still(frame)
    planner.plan(frame, 0, [])
    assert not planner.still(frame)
    on = SearchPlanner(make_board(Path("/nonexistent"), detector={"still_grey_levels": 8.0}).detector)
    assert not on.still(frame)  # nothing worked on yet
    on.plan(frame, 0, [])
    assert on.still(frame.copy())


@pytest.mark.parametrize("value", ["-1.0", "255.0", "nan"])
def test_board_refuses_an_absurd_still_setting(tmp_path, value):
    text = re.sub(r"(?m)^still_grey_levels = .*\n", "", (boards_dir() / "virtual.toml").read_text())
    text = text.replace("[detector]\n", f"[detector]\nstill_grey_levels = {value}\n")
    with pytest.raises(BoardFileError, match="still_grey_levels"):
        parse_board(text, tmp_path / "virtual.toml")
