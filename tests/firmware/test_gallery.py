"""The SQLite gallery: matching, margins, embedding spaces, and durability when the writer is killed."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.firmware.app import BoardApp
from wearface.firmware.errors import GalleryError
from wearface.firmware.gallery import Gallery

from .conftest import flash_app, make_board, signed_bundle


def _unit(*values):
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def test_nearest_person_distance_margin_and_threshold(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "space1", threshold=0.5)
    g.add("ann", np.stack([_unit(1, 0, 0), _unit(1, 0.2, 0)]))
    g.add("bob", _unit(0, 1, 0))
    m = g.match(_unit(1, 0.1, 0))
    assert m.name == "ann" and m.next_name == "bob"
    assert m.distance == pytest.approx(np.linalg.norm(_unit(1, 0.1, 0) - _unit(1, 0, 0)), abs=1e-5) or \
        m.distance == pytest.approx(np.linalg.norm(_unit(1, 0.1, 0) - _unit(1, 0.2, 0)), abs=1e-5)
    assert m.margin == pytest.approx(np.linalg.norm(_unit(1, 0.1, 0) - _unit(0, 1, 0)) - m.distance, abs=1e-5)
    far = g.match(_unit(0, 0, 1))  # distance sqrt(2) to everyone: "Don't know"
    assert far.name is None and far.nearest in ("ann", "bob") and far.distance == pytest.approx(2 ** 0.5, abs=1e-5)
    assert Gallery(tmp_path / "empty.sqlite", "s").match(_unit(1, 0, 0)).name is None


def test_other_embedding_space_is_never_matched(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "old", threshold=2.0)
    g.add("ann", _unit(1, 0, 0))
    assert g.set_model("new", 2.0) == ["ann"]
    assert g.match(_unit(1, 0, 0)).name is None
    g.add("ann", _unit(0, 1, 0))
    assert g.match(_unit(0, 1, 0)).name == "ann" and g.needs_reenrolment() == []
    assert g.list_people()[0]["embeddings"] == 2 and g.list_people()[0]["usable"] == 1


def test_bad_requests(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "s")
    for bad in (np.zeros((0, 3)), np.full(3, np.nan), np.zeros((2, 2, 2))):
        with pytest.raises(GalleryError) as err:
            g.add("x", bad)
        assert err.value.reason == "bad_embedding"
    with pytest.raises(GalleryError):
        g.delete("nobody")
    with pytest.raises(GalleryError):
        Gallery(tmp_path / "n.sqlite", "").add("x", _unit(1, 0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3)), min_size=1, max_size=12))
def test_match_agrees_with_brute_force(tmp_path_factory, enrolments):
    basis = np.eye(4, dtype=np.float32)
    g = Gallery(tmp_path_factory.mktemp("g") / "g.sqlite", "s", threshold=1.0)
    stored = {}
    for name, k in enrolments:
        g.add(name, basis[k])
        stored.setdefault(name, []).append(basis[k])
    q = _unit(0.9, 0.3, 0.2, 0.1)
    dist = {n: min(float(np.linalg.norm(q - v)) for v in vs) for n, vs in stored.items()}
    m = g.match(q)
    assert m.distance == pytest.approx(min(dist.values()), abs=1e-5)
    assert dist[m.nearest] == pytest.approx(m.distance, abs=1e-6)
    g.close()


_WRITER = r"""
import sys, numpy as np
from wearface.firmware.gallery import Gallery
g = Gallery(sys.argv[1], "space1")
rng = np.random.default_rng(0)
for i in range(100000):
    v = rng.normal(size=(3, 128)).astype(np.float32)
    g.add(f"person{i}", v / np.linalg.norm(v, axis=1, keepdims=True))
    print(f"person{i}", flush=True)   # printed only after the commit returned
"""


def _kill_writer_after(path, n_committed: int) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    committed = []
    for line in proc.stdout:
        committed.append(line.strip())
        if len(committed) >= n_committed:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(committed) == n_committed, "the writer died before it was killed"
    return committed


def test_killed_writer_loses_nothing_committed(tmp_path):
    path = tmp_path / "gallery.sqlite"
    committed = _kill_writer_after(path, 25)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    g = Gallery(path, "space1")
    names = {p["name"] for p in g.list_people()}
    assert set(committed) <= names
    assert all(p["embeddings"] == 3 for p in g.list_people())  # a transaction is all or nothing


def test_power_loss_during_gallery_write_then_the_board_boots_its_slot_with_the_gallery(tmp_path):
    board = make_board(tmp_path)
    app = BoardApp(board, frames=[])
    flash_app(app, signed_bundle(1))
    app.reboot()
    app.booter.confirm(30)
    space = app.info()["embedding_space"]
    app.close()
    committed = _kill_writer_after(board.flash_root() / board.flash.gallery, 10)
    again = BoardApp(board, frames=[])
    assert (again.state, again.info()["active_slot"]) == ("running", "A")
    listed = {p["name"]: p for p in again.gallery_list()}
    assert set(committed) <= set(listed)
    assert all(listed[n]["needs_reenrolment"] for n in committed) and space != "space1"
    again.close()


# --------------------------------------------------------------------------- kept crops and re-embedding

def _crop(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)


def _fake_embed(crop: np.ndarray) -> np.ndarray:
    """A deterministic 'new net': the crop's mean colour per quadrant, normalised (16 numbers)."""
    q = crop.reshape(2, 56, 2, 56, 3).mean(axis=(1, 3)).reshape(-1).astype(np.float32)
    v = np.concatenate([q, np.ones(4, np.float32)])
    return v / np.linalg.norm(v)


def test_kept_crops_round_trip_and_go_with_their_person(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "old", threshold=2.0)
    crops = [_crop(1), _crop(2)]
    g.add("ann", np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]), crops=crops)
    g.add("bob", _unit(0, 0, 1))  # no crop kept
    assert [np.array_equal(a, b) for a, b in zip(g.crops_of("ann"), crops)] == [True, True]
    listed = {p["name"]: p for p in g.list_people()}
    assert listed["ann"]["crops"] == 2 and listed["bob"]["crops"] == 0
    g.set_model("new", 2.0)
    assert [n for _, n in g.pending_crops()] == ["ann", "ann"]
    assert g.needs_reenrolment() == ["bob"]  # ann can be re-embedded, bob cannot
    crop_id = g.pending_crops()[0][0]
    assert g.add_reembedded(crop_id, _unit(1, 1, 0)) is True
    assert g.add_reembedded(crop_id, _unit(1, 1, 0)) is False  # idempotent: a repeat after a power cut writes nothing
    assert len(g.pending_crops()) == 1 and g.match(_unit(1, 1, 0)).name == "ann"
    g.delete("ann")
    assert g.pending_crops() == [] and g.add_reembedded(crop_id, _unit(1, 1, 0)) is False
    with pytest.raises(GalleryError):
        g.crop(crop_id)
    with pytest.raises(GalleryError):
        g.add("cy", _unit(1, 0, 0), crops=[np.zeros((50, 50, 3), np.uint8)])


def test_a_schema_1_gallery_opens_and_keeps_its_people(tmp_path):
    path = tmp_path / "g.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_t REAL NOT NULL);
        CREATE TABLE embeddings (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            vector BLOB NOT NULL, dim INTEGER NOT NULL, embedding_space TEXT NOT NULL, model_version TEXT NOT NULL,
            created_t REAL NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO people VALUES (1, 'ann', 0);""")
    db.execute("INSERT INTO embeddings VALUES (1, 1, ?, 3, 'old', 'v1', 0)", (_unit(1, 0, 0).astype("<f4").tobytes(),))
    db.commit()
    db.close()
    g = Gallery(path, "old", threshold=0.5)
    assert g.match(_unit(1, 0, 0)).name == "ann" and g.list_people()[0]["crops"] == 0
    g.add("bob", _unit(0, 1, 0), crops=[_crop(3)])
    assert g.pending_crops("other") == [(1, "bob")]


_REEMBEDDER = """
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from test_gallery_helpers import fake_embed
from wearface.firmware.gallery import Gallery
g = Gallery(sys.argv[1], "new")
for crop_id, name in g.pending_crops():
    g.add_reembedded(crop_id, fake_embed(g.crop(crop_id)), "v2", reload=False)
    print(crop_id, flush=True)
"""


def test_re_embedding_killed_at_random_points_loses_nothing_and_resumes(tmp_path):
    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "test_gallery_helpers.py").write_text(
        "import numpy as np\n" + "\n".join(__import__("inspect").getsource(_fake_embed).replace("_fake_embed", "fake_embed")
                                           .splitlines()) + "\n")
    path = tmp_path / "g.sqlite"
    g = Gallery(path, "old")
    for i in range(12):
        g.add(f"p{i}", np.stack([_unit(1, i, 0), _unit(0, 1, i)]), crops=[_crop(2 * i), _crop(2 * i + 1)])
    g.close()
    rng = np.random.default_rng(0)
    for trial in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _REEMBEDDER, str(path), str(helper)], stdout=subprocess.PIPE, text=True)
        for _ in range(int(rng.integers(0, 4))):  # kill after 0-3 acknowledged re-embeddings (or at start-up)
            if not proc.stdout.readline():
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM crops").fetchone()[0] == 24
        assert db.execute("SELECT COUNT(*) FROM embeddings WHERE embedding_space = 'old'").fetchone()[0] == 24
        db.close()
    g = Gallery(path, "new", threshold=1e-3)
    for crop_id, _ in g.pending_crops():  # what the kills left: the next confirmed boot finishes it
        g.add_reembedded(crop_id, _fake_embed(g.crop(crop_id)), "v2")
    assert g.pending_crops() == [] and all(p["spaces"] == {"old": 2, "new": 2} for p in g.list_people())
    for i in range(12):
        assert g.match(_fake_embed(_crop(2 * i))).name == f"p{i}"  # each re-embedded vector is its own crop's


def test_a_cohort_asks_more_of_a_probe_that_lies_among_many_faces(tmp_path):
    """Metric "l2_cohort": named iff distance / (the probe's k-th nearest cohort distance) < θ."""
    g = Gallery(tmp_path / "g.sqlite", "space1", threshold=0.5)
    g.add("ann", _unit(1, 0, 0, 0))
    probe = _unit(1, 0.45, 0, 0)  # 0.42 from ann: named by the plain rule at θ 0.5
    plain = g.match(probe)
    assert plain.name == "ann" and plain.score == pytest.approx(plain.distance)
    # strangers far from the probe (sqrt(2) away): score = 0.42 / 1.41 = 0.30, still named
    g.set_model("space1", 0.5, np.stack([_unit(0, 0, 1, 0), _unit(0, 0, 0, 1), _unit(0, 0, -1, 0)]), 2)
    far = g.match(probe)
    assert far.name == "ann" and far.score == pytest.approx(far.distance / 2 ** 0.5, abs=1e-5)
    # the probe lies among strangers (its 2nd-nearest stranger 0.2 away): score 0.42 / 0.2 > θ, "don't know"
    near = np.stack([_unit(1, 0.5, 0.1, 0), _unit(1, 0.4, -0.1, 0), _unit(0, 0, 1, 0)])
    g.set_model("space1", 0.5, near, 2)
    crowded = g.match(probe)
    assert crowded.name is None and crowded.nearest == "ann" and crowded.score > 0.5
    assert crowded.distance == pytest.approx(plain.distance)  # the distance itself is unchanged
    # what θ means in distance for this probe: named exactly when the distance is under it
    assert crowded.distance >= g.distance_threshold(probe) == pytest.approx(0.5 * crowded.distance / crowded.score)
    # a model without a cohort goes back to the distance
    g.set_model("space1", 0.5)
    assert g.match(probe).name == "ann" and g.cohort is None and g.distance_threshold(probe) == 0.5
    with pytest.raises(GalleryError, match="cohort_k"):
        g.set_model("space1", 0.5, near, 4)


def test_the_board_decides_with_the_cohort_its_bundle_carries(tmp_path):
    from wearface.host_tools.bundle import bundle_build, keys
    from wearface.kernels import nets

    rng = np.random.default_rng(3)
    data = bundle_build.sign_bundle(bundle_build.build_bundle(
        bundle_build.random_qnet(nets.ALIGN_NET, 0), bundle_build.random_qnet(nets.MODEL_A, 1), 0.7,
        list(bundle_build.DEFAULT_COMPATIBLE), "cohort-1", 0, {}, cohort=rng.normal(size=(20, 128)), cohort_k=5,
        created_at="2026-01-01T00:00:00+00:00"), keys.DEV_PRIVATE_KEY)
    board = make_board(tmp_path)
    app = BoardApp(board, frames=[])
    flash_app(app, data)
    app.reboot()
    assert app.state == "running" and app.gallery.cohort.shape == (20, 128) and app.gallery.cohort_k == 5
    assert app.gallery.threshold == pytest.approx(0.7)
    # an enrolment's spread is a distance: the board says what distance θ means for this person
    import cv2

    from wearface.firmware import scene

    face = cv2.cvtColor(cv2.resize(scene.grace_hopper_face(), (128, 128), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)
    result = app.enroll_images("grace", [face])
    assert result["threshold"] == pytest.approx(0.7) and result["distance_threshold"] != pytest.approx(0.7)
    assert 0 < result["distance_threshold"] <= 0.7 * 2.0  # unit vectors lie at most 2 apart
    app.close()
    plain = BoardApp(make_board(tmp_path / "plain"), frames=[])
    flash_app(plain, signed_bundle(1))
    plain.reboot()
    assert plain.state == "running" and plain.gallery.cohort is None  # a bundle without one: the distance decides
    assert plain.enroll_images("grace", [face])["distance_threshold"] == pytest.approx(plain.gallery.threshold)
    plain.close()


def test_mean_matching_measures_the_distance_to_each_persons_template(tmp_path):
    """gallery_match "mean": the distance to a person is to the unit mean of their embeddings."""
    g = Gallery(tmp_path / "g.sqlite", "space1", threshold=0.3)
    ann = np.stack([_unit(1, 0.5, 0, 0), _unit(1, -0.5, 0, 0)])  # the probe lies between ann's two images
    g.add("ann", ann)
    g.add("bob", _unit(1, 0, 0.35, 0))
    probe = _unit(1, 0, 0, 0)
    nearest = g.match(probe)  # 0.46 from either of ann's images, 0.34 from bob's one: not named at θ 0.3
    assert nearest.nearest == "bob" and nearest.name is None
    assert g.set_model("space1", 0.3, gallery_match="mean") == []
    mean = g.match(probe)  # ann's template is the probe itself
    assert mean.name == "ann" and mean.distance == pytest.approx(0.0, abs=1e-6) and mean.next_name == "bob"
    assert g.nearest(probe, 2) == [{"name": "ann", "distance": pytest.approx(0.0, abs=1e-5)},
                                   {"name": "bob", "distance": pytest.approx(nearest.distance, abs=1e-5)}]
    g.add("ann", _unit(0, 0, 0, 1))  # a new enrolment moves the template at once
    template = _unit(*(ann.sum(axis=0) + _unit(0, 0, 0, 1)))
    assert {p["name"]: p["distance"] for p in g.nearest(probe, 2)}["ann"] == pytest.approx(
        np.linalg.norm(probe - template), abs=1e-5)
    assert g.match(probe).nearest == "bob"  # ann's template moved away from the probe
    with pytest.raises(GalleryError) as err:
        g.set_model("space1", 0.3, gallery_match="median")
    assert err.value.reason == "bad_match"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 5)), min_size=1, max_size=12))
def test_mean_match_agrees_with_brute_force(tmp_path_factory, enrolments):
    vectors = np.random.default_rng(7).normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    g = Gallery(tmp_path_factory.mktemp("g") / "g.sqlite", "s", threshold=1.0)
    g.set_model("s", 1.0, gallery_match="mean")
    stored = {}
    for name, k in enrolments:
        g.add(name, vectors[k])
        stored.setdefault(name, []).append(vectors[k])
    q = vectors[0] * 0.6 + vectors[1] * 0.8
    q /= np.linalg.norm(q)
    dist = {}
    for n, vs in stored.items():
        t = np.sum(vs, axis=0)
        t = t / np.linalg.norm(t) if np.linalg.norm(t) > 1e-12 else np.zeros_like(t)
        dist[n] = float(np.linalg.norm(q - t))
    m = g.match(q)
    assert m.distance == pytest.approx(min(dist.values()), abs=1e-5)
    assert dist[m.nearest] == pytest.approx(m.distance, abs=1e-5)
    g.close()


def test_the_board_matches_as_its_bundle_says(tmp_path):
    from wearface.host_tools.bundle import bundle_build

    app = BoardApp(make_board(tmp_path), frames=[])
    flash_app(app, bundle_build.build_test_bundle(1, gallery_match="mean", threshold_by_count=[0.9, 0.8]))
    app.reboot()
    assert app.state == "running" and app.gallery.gallery_match == "mean"
    assert app.gallery.threshold_by_count == (0.9, 0.8)
    app.close()
    plain = BoardApp(make_board(tmp_path / "plain"), frames=[])
    flash_app(plain, signed_bundle(1))
    plain.reboot()
    assert plain.state == "running" and plain.gallery.gallery_match == "nearest" and plain.gallery.threshold_by_count == ()
    plain.close()


def test_theta_follows_the_persons_enrolment_count_when_the_model_gives_a_table(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "space1", threshold=0.3)
    g.add("ann", _unit(1, 0, 0, 0))
    g.add("bob", np.stack([_unit(0, 1, 0, 0), _unit(0, 1, 0.1, 0), _unit(0, 1, -0.1, 0)]))
    probe_ann, probe_bob = _unit(1, 0.4, 0, 0), _unit(0.4, 1, 0, 0)  # each 0.37 from their person
    assert g.match(probe_ann).name is None and g.match(probe_bob).name is None  # θ 0.3 for everyone
    g.set_model("space1", 0.3, threshold_by_count=(0.4, 0.35))  # 1 image: 0.4; 2 or more: 0.35
    assert g.threshold_for("ann") == 0.4 and g.threshold_for("bob") == 0.35 and g.threshold_for(None) == 0.3
    named = g.match(probe_ann)
    assert named.name == "ann" and named.threshold == 0.4
    assert g.match(probe_bob).name is None and g.match(probe_bob).threshold == 0.35
    assert g.distance_threshold(probe_ann, "ann") == pytest.approx(0.4)
    g.set_model("space1", 0.3, threshold_by_count=(0.4, 0.38))
    assert g.match(probe_bob).name == "bob"
    g.set_model("space1", 0.3)  # a model without a table: θ again
    assert g.match(probe_ann).name is None and g.match(probe_ann).threshold == 0.3
    for bad in ((0.4, -1.0), (float("nan"),)):
        with pytest.raises(GalleryError) as err:
            g.set_model("space1", 0.3, threshold_by_count=bad)
        assert err.value.reason == "bad_threshold"
