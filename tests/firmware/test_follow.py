"""Following faces between detections (issue 16): one track id through frames without a search, tracks end when
the face leaves, new faces appear within ``detector.every_frames`` frames.  Behaviour only, never speed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wearface.firmware import events as ev
from wearface.firmware import follow as fol
from wearface.firmware import scene
from wearface.firmware.board import parse_board
from wearface.firmware.camera import IterableSource
from wearface.firmware.errors import BoardFileError
from wearface.firmware.facemodel import FaceModel
from wearface.firmware.gallery import Gallery
from wearface.firmware.pipeline import Pipeline
from wearface.firmware.tracker import iou

from .conftest import make_board

#: no full search after frame 0 within these tests' videos: everything after it is following
NEVER = 10_000


def _run(tmp_path, shipped_bundle, actors, n_frames, every_frames=NEVER, roi_on_change=False, kind="haar"):
    """Run the loop over a scene; ([(frame, {track id: box})], events, pipeline, [placed boxes per frame]).
    ``kind``: the board's detector ("haar" or "blazeface")."""
    board = make_board(tmp_path, detector={"every_frames": every_frames, "roi_on_change": roi_on_change, "kind": kind},
                       tracker={"max_embeds_per_frame": 1})
    renders = [scene.render(actors, k, n_frames) for k in range(n_frames)]
    gallery = Gallery(tmp_path / "g.sqlite", str(shipped_bundle.embedding_space), float(shipped_bundle.threshold))
    bus = ev.EventBus()
    events = []
    bus.subscribe(events.append)
    pipeline = Pipeline(board, FaceModel(board, shipped_bundle), gallery, bus, IterableSource([f for f, _ in renders]))
    tracks = []
    for k, (frame, _) in enumerate(renders):
        pipeline.step(frame)
        tracks.append({tr.id: tr.box for tr in pipeline.tracker.tracks.values()})
    gallery.close()
    return tracks, events, pipeline, [placed for _, placed in renders]


@pytest.mark.parametrize("kind", ["haar", "blazeface"])
def test_a_moving_turning_face_keeps_one_track_without_a_full_search(tmp_path, shipped_bundle, kind):
    face = scene.grace_hopper_face()
    n = 40
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(0.3, 0.45), to_xy=(0.65, 0.55), size_px=(150, 150),
                          max_angle_deg=15.0, light=0.2)]
    tracks, events, pipeline, placed = _run(tmp_path, shipped_bundle, actors, n, kind=kind)
    assert pipeline.counts["searches_full"] == 1  # frame 0 only
    ids = {tid for frame in tracks for tid in frame}
    assert ids == {1}, tracks
    # the followed box stays on the face: the pasted square is ~1.2 box widths of the canonical frame
    for k in range(n):
        (box,) = tracks[k].values()
        (_, true_box), = placed[k]
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        tx, ty = true_box[0] + true_box[2] / 2, true_box[1] + true_box[3] / 2
        assert np.hypot(cx - tx, cy - ty) < 0.15 * true_box[2], (k, box, true_box)
    assert pipeline.counts["tracks_followed"] >= n - 3  # confirmed by a region search in frame 1, followed since
    appeared = [e for e in events if e["event"] == "person.appeared"]
    assert [e["track"] for e in appeared] == [1] and appeared[0]["frame"] <= 1


def test_a_face_leaving_the_frame_ends_its_track(tmp_path, shipped_bundle):
    face = scene.grace_hopper_face()
    n = 40
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(0.5, 0.5), to_xy=(1.4, 0.5), size_px=(140, 140),
                          max_angle_deg=0.0)]
    tracks, events, pipeline, placed = _run(tmp_path, shipped_bundle, actors, n)
    left = [e for e in events if e["event"] == "person.left"]
    assert [e["track"] for e in left] == [1]
    # it ends while the video still runs, about when the face's centre crosses the edge
    centre_out = next(k for k in range(n) if not placed[k] or placed[k][0][1][0] + 70 >= 640)
    assert centre_out - 3 <= left[0]["frame"] <= centre_out + 2, (left, centre_out)
    assert not tracks[-1]
    assert pipeline.counts["searches_full"] == 1


def test_a_face_that_vanishes_ends_its_track_within_max_missed_frames(tmp_path, shipped_bundle):
    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=0, stop=15, from_xy=(0.4, 0.5), to_xy=(0.5, 0.5), size_px=(150, 150))]
    tracks, events, pipeline, _ = _run(tmp_path, shipped_bundle, actors, 40)
    left = [e for e in events if e["event"] == "person.left"]
    assert [e["track"] for e in left] == [1]
    max_missed = pipeline.board.tracker.max_missed_frames
    assert not tracks[15 + max_missed + 1], tracks  # the follower doubted, the region searches missed: ended
    assert pipeline.counts["follow_doubts"] >= 1 and pipeline.counts["searches_full"] == 1


@pytest.mark.parametrize("roi_on_change,kind", [(False, "haar"), (True, "haar"), (False, "blazeface"),
                                                (True, "blazeface")])
def test_a_new_face_appears_within_every_frames(tmp_path, shipped_bundle, roi_on_change, kind):
    face = scene.grace_hopper_face()
    every, start = 6, 7  # enters just after the full search of frame 6: the worst case without change search
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(0.25, 0.5), to_xy=(0.3, 0.5), size_px=(140, 140)),
              scene.Actor(np.ascontiguousarray(face[:, ::-1]), start=start, stop=None, from_xy=(0.75, 0.5), to_xy=(0.7, 0.5),
                          size_px=(140, 140))]
    tracks, events, pipeline, _ = _run(tmp_path, shipped_bundle, actors, 30, every_frames=every, roi_on_change=roi_on_change,
                                       kind=kind)
    appeared = {e["track"]: e["frame"] for e in events if e["event"] == "person.appeared"}
    assert len(appeared) == 2, events
    second = max(appeared.values())
    hits = pipeline.board.tracker.appear_after_hits
    assert start <= second <= start + every + hits - 1
    if roi_on_change:  # the change outside the tracked face is searched at once
        assert second <= start + hits
    assert pipeline.stats()["detect_every_frames"] == every


def test_signature_sees_the_face_not_its_place_and_box_of_window_inverts_face_window():
    face = scene.grace_hopper_face()
    base = scene.background(320, 240)
    frames = []
    for dx in (0, 30):
        frame = base.copy()
        f = np.ascontiguousarray(face[::2, ::2])
        frame[40:40 + f.shape[0], 60 + dx:60 + dx + f.shape[1]] = f
        frames.append(frame)
    box = (60 + 0.2 * 178, 40 + 0.2 * 178, 0.625 * 178, 0.625 * 178)  # the cascade box inside the 1.6x crop
    moved = (box[0] + 30, box[1], box[2], box[3])
    from wearface.firmware.detect import face_window

    a = fol.signature(frames[0], face_window(box))
    b = fol.signature(frames[1], face_window(moved))
    elsewhere = fol.signature(frames[1], face_window(box))
    assert fol.compare(b, a)[0] > 0.95 and fol.compare(elsewhere, a)[0] < fol.compare(b, a)[0] - 0.2
    assert 0.9 < fol.compare(b, a)[1] < 1.1
    assert iou(fol.box_of_window(face_window(box)), box) > 0.999


def test_board_refuses_sparse_detection_without_following(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "boards" / "virtual.toml").read_text()
    with pytest.raises(BoardFileError, match="every_frames"):
        parse_board(text.replace("[follow]\nenabled = true", "[follow]\nenabled = false"), tmp_path / "b.toml")
    with pytest.raises(BoardFileError, match="min_similarity"):
        parse_board(text.replace("min_similarity = 0.3", "min_similarity = 1.5"), tmp_path / "b.toml")
