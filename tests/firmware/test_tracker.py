"""Tracker: IoU / centre matching, track lifetimes, who needs an embedding; the loop's fixed-rate mode."""
from __future__ import annotations

import numpy as np

from wearface.firmware import scene
from wearface.firmware.board import TrackerConfig
from wearface.firmware.tracker import Tracker, iou


def test_iou_by_hand():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_tracks_follow_boxes_appear_and_leave():
    tracker = Tracker(TrackerConfig(appear_after_hits=2, max_missed_frames=1))
    u0 = tracker.update([(0, 0, 100, 100), (300, 0, 100, 100)], 0, 0.0)
    assert len(u0.new) == 2 and not u0.appeared
    u1 = tracker.update([(310, 5, 100, 100), (8, 2, 100, 100)], 1, 0.1)  # order swapped, both moved
    assert not u1.new and {t.id for t in u1.appeared} == {1, 2}
    assert tracker.tracks[1].box == (8, 2, 100, 100) and tracker.tracks[2].box == (310, 5, 100, 100)
    u2 = tracker.update([(43, 37, 100, 100)], 2, 0.2)  # a fast move: IoU 0.27, the centre within half a width
    assert not u2.new and u2.seen[0][0].id == 1
    u3 = tracker.update([(50, 40, 100, 100)], 3, 0.3)
    assert [t.id for t in u3.lost] == [2]  # missed frames 2 and 3: 2 > max_missed_frames
    assert [t.id for t in tracker.drain()] == [1]


def test_embedding_need_and_mean():
    cfg = TrackerConfig(min_embeddings=2, reembed_every_frames=10, max_embeddings=3)
    tracker = Tracker(cfg)
    track = tracker.update([(0, 0, 50, 50)], 0, 0.0).new[0]
    assert tracker.embedding_need(track, 0)[0] == 0
    for k, v in enumerate(([1, 0], [0, 1], [1, 1], [3, 0])):
        track.add_embedding(np.asarray(v, np.float32), k, cfg.max_embeddings)
    assert len(track.embeddings) == 3  # the oldest one went
    expected = np.array([0, 1]) + np.array([1, 1]) / np.sqrt(2) + np.array([1, 0])
    assert np.allclose(track.mean_embedding(), expected / np.linalg.norm(expected), atol=1e-6)
    assert tracker.embedding_need(track, 5) is None and tracker.embedding_need(track, 13)[0] == 1


def _events_of_a_run(tmp_path, tag):
    from wearface.firmware.app import BoardApp

    from .conftest import flash_app, make_board, signed_bundle

    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, 0, 30, (0.25, 0.5), (0.3, 0.5), (150, 150)),
              scene.Actor(255 - face, 0, 30, (0.75, 0.5), (0.7, 0.5), (150, 150))]
    board = make_board(tmp_path / tag, tracker={"max_embeds_per_frame": 1})
    app = BoardApp(board, frames=lambda: scene.scene_frames(actors, 30))
    flash_app(app, signed_bundle(1))
    app.reboot()
    app.stop()
    app.enroll_images("grace", [face[:, :, ::-1].copy()])
    events = []
    app.subscribe(events.append)
    app.reboot()
    assert app.wait_loop(120)
    app.close()
    return [(e["event"], e["track"], e.get("name"), e.get("frame"), e.get("distance")) for e in events
            if e["event"].startswith("person.")]


def test_fixed_embedding_rate_makes_the_events_reproducible(tmp_path):
    first = _events_of_a_run(tmp_path, "one")
    assert [e for e in first if e[0] == "person.recognised"]
    assert first == _events_of_a_run(tmp_path, "two")
