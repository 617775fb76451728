"""The SQLite gallery: matching, margins, embedding spaces, and durability when the writer is killed."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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
