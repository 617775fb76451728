"""BlazeFace's proposals in the real loop (``[detector] propose_score``): a face the full-range net is not sure of is
looked at again by the short-range net while its track is new; once the track is confirmed, the full searches take
the proposal on it as that face without another look.  Behaviour only, never speed."""
from __future__ import annotations

from wearface.firmware import scene
from wearface.firmware.facemodel import FaceModel

from .conftest import make_board, run_loop


def _small_face_frames(n):
    """A still 640x360 scene (one frame n times): the test portrait at a size the full-range net scores 0.3-0.6
    letterboxed (0.52, measured), its box (41 px) just over the board's smallest face (40 px)."""
    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(150 / 640, 0.5), to_xy=(150 / 640, 0.5), size_px=(62, 62))]
    return [scene.render(actors, 0, 1, width=640, height=360)[0]] * n


def _run(tmp_path, shipped_bundle, propose_score, known=True):
    board = make_board(tmp_path, detector={"every_frames": 4, "propose_score": propose_score, "cut_fraction": 0.0})
    model = FaceModel(board, shipped_bundle)
    looks = []
    second_look = model.detector.second_look
    model.detector.second_look = lambda *a, **k: looks.append(1) or second_look(*a, **k)
    if not known:  # the loop as if it did not tell the detector its tracks
        detect = model.detect
        model.detect = lambda frame, known=(): detect(frame)
    pipeline, ids, _ = run_loop(tmp_path, board, model, shipped_bundle, _small_face_frames(13))
    return ids, len(looks), pipeline.stats()["searches_full"]


def test_a_face_found_by_a_proposal_is_tracked_and_not_looked_at_again(tmp_path, shipped_bundle):
    ids, looks, full = _run(tmp_path, shipped_bundle, 0.3)
    assert full == 4  # frames 0, 4, 8, 12
    assert ids[0] and all(i == ids[0] for i in ids), ids  # one track, from the first frame on
    # looked at while its track is new (frames 0 and 4: the region searches between find the face a little under the
    # board's 40-px smallest face, so the second full search confirms it), never once it is confirmed
    assert looks == 2
    # told nothing of its tracks, the detector would look again at every full search
    assert _run(tmp_path / "b", shipped_bundle, 0.3, known=False)[1] == full == 4
    # and without proposals the face is never found at all
    assert not any(_run(tmp_path / "c", shipped_bundle, 0.0)[0])
