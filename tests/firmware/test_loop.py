"""The recognition loop inside BoardApp on synthesized videos of face crops: the events it emits."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from wearface.firmware import scene
from wearface.firmware.app import BoardApp
from wearface.firmware.camera import IterableSource
from wearface.firmware.errors import EnrollError, GalleryError, NotRunningError
from wearface.firmware.pipeline import Pipeline

from .conftest import flash_app, lfw_faces, make_board, signed_bundle

SHIPPED_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default.wfb"


def _rgb(bgr, side=None):
    if side:
        bgr = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _running_app(tmp_path, frames, bundle: bytes | None = None, **board_changes):
    board = make_board(tmp_path, **board_changes)
    app = BoardApp(board, frames=frames)
    flash_app(app, bundle if bundle is not None else signed_bundle(1))
    recorded = []
    app.subscribe(recorded.append)
    return app, recorded


def _by_track(events):
    tracks = {}
    for e in events:
        if e["event"].startswith("person."):
            tracks.setdefault(e["track"], []).append(e)
    return tracks


def test_loop_recognises_the_enrolled_face_once_per_track_and_confirms_the_trial(tmp_path):
    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=5, stop=60, size_px=(150, 180))]
    # random nets: a random alignment net cannot follow a face, so this test searches every frame (following is
    # tested with the shipped bundle's trained aligner in test_follow.py)
    app, events = _running_app(tmp_path, lambda: scene.scene_frames(actors, 75), detector={"every_frames": 1},
                               follow={"enabled": False})
    app.stop()  # recovery had no loop; enrol first, then boot the flashed bundle with the video
    app.reboot()
    app.stop()
    app.enroll_images("grace", [_rgb(face, 128)])
    app.enroll_images("inverted", [_rgb(255 - face, 128)])  # a second, very different "person"
    events.clear()
    app.reboot()
    assert app.wait_loop(120)
    names = [e["event"] for e in events]
    assert names[:3] == ["boot.verified", "boot.trial", "boot.booted"]
    assert "boot.confirmed" in names and names[-1] == "camera.ended"
    tracks = _by_track(events)
    assert len(tracks) == 1, tracks
    (track,) = tracks.values()
    kinds = [e["event"] for e in track]
    assert kinds == ["person.appeared", "person.recognised", "person.left"], [(e["event"], e.get("name"), e.get("distance"),
                                                                               e["frame"]) for e in track]
    recognised = track[1]
    # decided as soon as the track has min_embeddings samples (one embedding per frame at least)
    assert recognised["frame"] <= track[0]["frame"] + app.board.tracker.min_embeddings
    assert recognised["n_embeddings"] == app.board.tracker.min_embeddings
    assert recognised["name"] == "grace" and recognised["next_name"] == "inverted"
    assert recognised["margin"] > 0 and recognised["distance"] < app.boot_result.bundle.threshold
    assert track[2]["name"] == "grace"
    # the decisions are in the log file on the flash
    log = "\n".join(app.log_tail(200))
    assert "boot.confirmed slot=A" in log and "person.recognised" in log
    stats = app.stats()
    assert stats["frames"] == 75 and stats["embeds"] < 75 / 2  # recognised once per track, not per frame
    assert set(stats["latency_ms"]) == {"detect", "follow", "align", "embed", "match", "frame"}
    app.close()


def test_unenrolled_face_is_unknown_and_debug_embeddings_only_when_asked(tmp_path):
    import threading

    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=0, stop=30, size_px=(160, 160))]
    go = threading.Event()

    def frames():  # each boot's camera waits for ``go`` before its first frame
        go.wait(30)
        yield from scene.scene_frames(actors, 40)
    app, events = _running_app(tmp_path, frames)
    go.set()
    app.reboot()
    assert app.wait_loop(120)
    tracks = _by_track(events)
    kinds = [e["event"] for t in tracks.values() for e in t]
    assert "person.unknown" in kinds and "person.recognised" not in kinds
    assert not [e for e in events if e["event"] == "debug.embedding"]
    events.clear()
    app.set_debug_embeddings(True)
    go.clear()
    app.reboot()  # a boot switches them off again (issue 15: biometric data only for the host that asks)
    assert app.info()["debug_embeddings"] is False
    app.set_debug_embeddings(True)
    go.set()
    assert app.wait_loop(120)
    debug = [e for e in events if e["event"] == "debug.embedding"]
    assert debug and debug[0]["embedding"].shape == (128,)
    assert abs(float(np.linalg.norm(debug[0]["embedding"])) - 1) < 1e-4
    app.close()


def test_lfw_faces_are_told_apart(tmp_path, shared_data):
    faces = lfw_faces(shared_data)
    (a, face_a), (b, face_b) = faces.items()
    actors = [scene.Actor(face_a, start=0, stop=40, from_xy=(0.25, 0.5), to_xy=(0.3, 0.5), size_px=(170, 170)),
              scene.Actor(face_b, start=0, stop=40, from_xy=(0.75, 0.5), to_xy=(0.7, 0.5), size_px=(170, 170))]
    # The shipped bundle's trained nets, not random ones: random weights tell two people apart only by luck.
    app, events = _running_app(tmp_path, lambda: scene.scene_frames(actors, 50), bundle=SHIPPED_BUNDLE.read_bytes())
    app.reboot()
    app.stop()
    app.enroll_images(a, [_rgb(face_a)])
    app.enroll_images(b, [_rgb(face_b)])
    events.clear()
    app.reboot()
    assert app.wait_loop(120)
    recognised = {e["name"] for e in events if e["event"] == "person.recognised"}
    assert recognised == {a, b}
    app.close()


def test_enrolment_errors_and_recovery(tmp_path):
    board = make_board(tmp_path)
    app = BoardApp(board, frames=[])
    assert app.state == "recovery" and app.info()["state"] == "recovery"
    with pytest.raises(NotRunningError):
        app.enroll_images("x", [np.zeros((100, 100, 3), np.uint8)])
    flash_app(app, signed_bundle(1))
    app.reboot()
    assert app.state == "running"
    with pytest.raises(EnrollError) as err:
        app.enroll_images("x", [np.full((480, 640, 3), 90, np.uint8)])
    assert err.value.reason == "no_face"
    face = scene.grace_hopper_face()
    two = np.hstack([cv2.resize(face, (300, 300)), cv2.resize(face, (300, 300))])
    with pytest.raises(EnrollError) as err:
        app.enroll_images("x", [_rgb(two)])
    assert err.value.reason == "several_faces"
    with pytest.raises(GalleryError) as err:
        app.enroll_images("", [_rgb(face, 128)])
    assert err.value.reason == "bad_name"
    result = app.enroll_images("grace", [_rgb(face, 128), _rgb(cv2.resize(face, (300, 300)))])
    assert result["added"] == 2 and result["spread_max"] >= 0
    assert app.gallery_list()[0]["name"] == "grace" and app.info()["gallery_size"] == 1
    assert app.gallery_delete("grace") == 2
    with pytest.raises(GalleryError) as err:
        app.gallery_delete("grace")
    assert err.value.reason == "unknown_name"
    app.close()


def test_new_embedding_space_marks_people_for_reenrolment_when_no_crop_is_kept(tmp_path):
    board = make_board(tmp_path, enrolment={"keep_crops": False})
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    app.enroll_images("grace", [_rgb(scene.grace_hopper_face(), 128)])
    app.booter.confirm(30)
    flash_app(app, signed_bundle(2))  # other random nets: another embedding space
    events = []
    app.subscribe(events.append)
    app.reboot()
    stale = [e for e in events if e["event"] == "gallery.needs_reenrolment"]
    assert stale and stale[0]["names"] == ["grace"]
    assert app.gallery_list()[0]["needs_reenrolment"] is True
    assert app.gallery.match(np.ones(128, np.float32) / np.sqrt(128)).name is None
    app.close()


def test_camera_counts_dropped_and_corrupt_frames():
    good = np.zeros((48, 64, 3), np.uint8)
    source = IterableSource([good, None, np.zeros((4, 4), np.float32), good[:, :, 0], "junk", good])
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    assert len(frames) == 3 and all(f.shape == (48, 64, 3) for f in frames)
    assert source.counters() == {"frames": 3, "dropped_frames": 1, "corrupt_frames": 2}


def test_video_file_source_plays_and_loops(tmp_path):
    from wearface.firmware.camera import VideoCaptureSource

    path = scene.write_video(tmp_path / "clip.avi", (np.full((64, 80, 3), i * 20, np.uint8) for i in range(5)))
    once = VideoCaptureSource(str(path), loop=False)
    count = 0
    while once.read() is not None:
        count += 1
    assert count == 5 and once.ended()
    looped = VideoCaptureSource(str(path), loop=True)
    assert all(looped.read() is not None for _ in range(12))


def _space_counts(app, name):
    return next(p for p in app.gallery_list() if p["name"] == name)["spaces"]


def test_a_confirmed_new_space_re_embeds_kept_crops_and_a_rollback_finds_the_old_space(tmp_path):
    board = make_board(tmp_path, enrolment={"drop_old_space_after_boots": 2})
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    app._on_frame(board.boot.confirm_after_frames)  # confirm space 1 the way the loop does
    app.wait_reembedded(30)
    old_space = str(app.model.bundle.embedding_space)
    app.enroll_images("grace", [_rgb(scene.grace_hopper_face(), 128), _rgb(scene.grace_hopper_face(), 150)])
    assert app.gallery_list()[0]["crops"] == 2

    flash_app(app, signed_bundle(2))  # other random nets: another embedding space
    events = []
    app.subscribe(events.append)
    app.reboot()  # trial boot: nothing is re-embedded yet, nobody is stale (crops are kept)
    new_space = str(app.model.bundle.embedding_space)
    assert new_space != old_space and app.boot_result.trial
    assert app.wait_reembedded(30) and _space_counts(app, "grace") == {old_space: 2}
    assert not [e for e in events if e["event"] in ("gallery.needs_reenrolment", "gallery.reembed")]
    person = next(p for p in app.gallery_list() if p["name"] == "grace")
    assert person["usable"] == 0 and person["needs_reenrolment"] is False

    app._on_frame(board.boot.confirm_after_frames)  # the trial slot is confirmed: re-embed now
    assert app.wait_reembedded(30)
    assert _space_counts(app, "grace") == {old_space: 2, new_space: 2}
    states = [e["state"] for e in events if e["event"] == "gallery.reembed"]
    assert states[0] == "started" and states[-1] == "done"
    crop = app.gallery.crops_of("grace")[0]
    assert app.gallery.match(app.model.embed(crop)).name == "grace"

    app.reboot()  # second confirmed boot of the new space: the old space's embeddings go
    assert app.wait_reembedded(30)
    assert _space_counts(app, "grace") == {new_space: 2}
    assert [e for e in events if e["event"] == "gallery.old_space_dropped"][0]["dropped"] == 2
    app.close()


def test_a_rollback_during_the_trial_keeps_matching_in_the_old_space(tmp_path):
    board = make_board(tmp_path, boot={"trial_boots": 1})
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    app._on_frame(board.boot.confirm_after_frames)
    app.wait_reembedded(30)
    old_space = str(app.model.bundle.embedding_space)
    app.enroll_images("grace", [_rgb(scene.grace_hopper_face(), 128)])
    flash_app(app, signed_bundle(2))
    app.reboot()  # the one trial boot, never confirmed
    app.reboot()  # trial used up: back on the old slot
    assert str(app.model.bundle.embedding_space) == old_space and app.wait_reembedded(30)
    assert _space_counts(app, "grace") == {old_space: 1}
    assert next(p for p in app.gallery_list() if p["name"] == "grace")["usable"] == 1
    app.close()


def test_explain_records_carry_the_crop_view_alignment_and_nearest_people_and_stop_when_off(tmp_path):
    board = make_board(tmp_path)
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    face = scene.grace_hopper_face()
    app.enroll_images("grace", [_rgb(face, 128)])
    app.enroll_images("ada", [_rgb(cv2.flip(face, 1), 128)])
    events = []
    app.subscribe(events.append)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100:356, 200:456] = cv2.resize(face, (256, 256))
    pipeline = app.pipeline or Pipeline(board, app.model, app.gallery, app.bus, IterableSource([]))
    app.pipeline = pipeline
    app.set_debug_embeddings(True, explain=True)
    for _ in range(3):
        pipeline.step(frame)
    explain = [e for e in events if e["event"] == "debug.explain"]
    assert explain, "no explain record"
    r = explain[0]
    assert r["crop"].shape == (112, 112, 3) and r["crop"].dtype == np.uint8
    assert r["view"].shape == (50, 50, 3) and r["alignment"].shape == (3,)
    assert [n["name"] for n in r["nearest"]] and {n["name"] for n in r["nearest"]} <= {"grace", "ada"}
    assert r["nearest"][0]["distance"] <= r["nearest"][-1]["distance"] and r["threshold"] == app.gallery.threshold
    assert r["distance_threshold"] == app.gallery.threshold  # no cohort here: θ is a distance
    app.set_debug_embeddings(True)  # embeddings on, explain off
    events.clear()
    pipeline.step(frame)
    assert not [e for e in events if e["event"] == "debug.explain"]
    app.close()
