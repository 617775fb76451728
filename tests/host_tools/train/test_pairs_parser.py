"""LFW pairs parser: round trip of generated files, clear errors on malformed lines, never a crash on junk."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.host_tools.train.data import DataError, Pair, parse_pairs

NAMES = st.text(alphabet="ABCxyz_-.'", min_size=1, max_size=12)


def _render(n_folds, n_half, pairs, two_numbers=True):
    head = f"{n_folds}\t{n_half}" if two_numbers else f"{n_half}"
    lines = [head]
    for p in pairs:
        lines.append(f"{p.name1}\t{p.index1}\t{p.index2}" if p.same else f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}")
    return "\n".join(lines) + "\n"


@st.composite
def pairs_files(draw):
    n_folds, n_half = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    pairs = []
    for fold in range(n_folds):
        for j in range(2 * n_half):
            same = j < n_half
            a, b = draw(NAMES), draw(NAMES)
            i1, i2 = draw(st.integers(1, 9999)), draw(st.integers(1, 9999))
            pairs.append(Pair(a, i1, a if same else b, i2, same, fold))
    return n_folds, n_half, pairs


@settings(max_examples=40, deadline=None)
@given(pairs_files(), st.booleans())
def test_generated_pairs_files_round_trip(spec, two_numbers):
    n_folds, n_half, pairs = spec
    if n_folds != 1:
        two_numbers = True
    parsed = parse_pairs(_render(n_folds, n_half, pairs, two_numbers), "gen")
    assert (parsed.n_folds, parsed.n_per_half) == (n_folds, n_half)
    assert list(parsed.pairs) == pairs


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_data_error(text):
    try:
        parse_pairs(text, "junk")
    except DataError as exc:
        assert str(exc).startswith("junk")


@pytest.mark.parametrize("text, where", [
    ("1\t1\nA\t1\t2\nB\t1\tC\n", "x:3"),          # mismatched pair with 3 fields
    ("1\t1\nA\t1\t0\nB\t1\tC\t2\n", "x:2"),       # image number 0
    ("1\t1\nA\t1\t2\n", "x: header says"),        # a line missing
    ("1\t1\nA\t1\tx\nB\t1\tC\t2\n", "x:2"),       # non-numeric image number
    ("ten\n", "x:1"),
])
def test_malformed_lines_name_the_line(text, where):
    with pytest.raises(DataError, match=where):
        parse_pairs(text, "x")


def test_real_pairs_files(shared_data):
    from wearface.host_tools.train.data import read_pairs

    v2 = read_pairs(shared_data / "lfw" / "pairs.txt")
    assert (v2.n_folds, v2.n_per_half, len(v2.pairs)) == (10, 300, 6000)
    assert sum(p.same for p in v2.pairs) == 3000 and v2.pairs[300].fold == 1 - 1 and v2.pairs[600].fold == 1
    v1 = read_pairs(shared_data / "lfw" / "pairsDevTest.txt")
    assert (v1.n_folds, v1.n_per_half, len(v1.pairs)) == (1, 500, 1000)
