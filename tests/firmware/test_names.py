"""One normal form for a person's name (NFC, trimmed) at enrolment, deletion and lookup; separators refused."""
from __future__ import annotations

import sqlite3
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.firmware.errors import GalleryError
from wearface.firmware.gallery import MAX_NAME_CHARS, Gallery, check_name
from wearface.firmware.log import BoardLog


def _unit(*values):
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def test_enrol_delete_and_lookup_use_the_same_name(tmp_path):
    g = Gallery(tmp_path / "g.sqlite", "s")
    g.add("  bob  ", _unit(1, 0))
    assert [p["name"] for p in g.list_people()] == ["bob"]
    assert len(g.embeddings_of(" bob")) == 1
    assert g.delete("  bob  ") == 1  # issue 15: this said NOT_FOUND
    g.add("Zoe\u0301", _unit(0, 1))  # decomposed é
    assert g.delete("Zo\u00e9") == 1  # precomposed é: the same name


def test_a_name_stored_before_normalisation_can_still_be_deleted(tmp_path):
    path = tmp_path / "g.sqlite"
    Gallery(path, "s").add("ann", _unit(1, 0))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE people SET name = ? WHERE name = 'ann'", ("Zoe\u0301",))  # as an older firmware stored it
    assert Gallery(path, "s").delete("Zo\u00e9") == 1


@pytest.mark.parametrize("bad", ["x\u2028INFO forged", "x\u2029", "x\u0085", "a\nb", "a\rb", "tab\there", "\x00",
                                 "bob\u0085", "\u202eevil", "a\u2066b", "\ud800", "", "   ", "x" * (MAX_NAME_CHARS + 1)])
def test_names_a_log_line_could_be_forged_with_are_refused(tmp_path, bad):
    g = Gallery(tmp_path / "g.sqlite", "s")
    for action in (lambda: g.add(bad, _unit(1, 0)), lambda: g.delete(bad), lambda: check_name(bad)):
        with pytest.raises(GalleryError) as err:
            action()
        assert err.value.reason == "bad_name"
    assert g.size() == 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_check_name_is_idempotent_nfc_and_free_of_separators(text):
    try:
        name = check_name(text)
    except GalleryError as exc:
        assert exc.reason == "bad_name" and str(exc)
        return
    assert check_name(name) == name == unicodedata.normalize("NFC", name) == name.strip()
    assert 1 <= len(name) <= MAX_NAME_CHARS
    assert len(name.splitlines()) == 1  # no character str.splitlines cuts at


def test_log_tail_cuts_lines_at_newlines_only(tmp_path):
    log = BoardLog(tmp_path / "firmware.log")
    log.info("message with a \u2028 separator and \x85 NEL inside")
    log.info("second")
    lines = log.tail(10)
    assert len(lines) == 2 and "\u2028" in lines[0] and lines[1].endswith("second")
    log.close()
