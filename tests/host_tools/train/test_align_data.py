"""The geometry data reader: index CSV parsing (hand cases and arbitrary text) and zip decoding."""
import zipfile

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.host_tools.errors import DataError
from wearface.host_tools.train import align_data

HEADER = "path,identity," + ",".join(align_data.LANDMARK_COLUMNS)


def test_parses_rows_with_and_without_landmarks():
    text = HEADER + "\na/1.jpg,7," + ",".join(str(v) for v in range(10)) + "\nb/2.jpg,8" + "," * 10 + "\n"
    items = align_data.parse_index(text)
    assert [it.path for it in items] == ["a/1.jpg", "b/2.jpg"]
    np.testing.assert_array_equal(items[0].landmarks, np.arange(10.0).reshape(5, 2))
    assert items[1].landmarks is None and items[1].identity == "8"


@pytest.mark.parametrize("text", [
    "path,identity\nx,1\n",                                   # no landmark columns
    HEADER + "\na,1,1,2,3,4,5,6,7,8,9,x\n",                   # not a number
    HEADER + "\na,1,1,2,3\n",                                 # short row
    HEADER + "\na,1,1,2,3,4,5,6,7,8,9,nan\n",                 # not finite
    HEADER + "\n,1" + ",1" * 10 + "\n",                        # no path
])
def test_malformed_indexes_raise_data_error(text):
    with pytest.raises(DataError):
        align_data.parse_index(text, "test.csv")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.booleans())
def test_arbitrary_text_parses_or_raises_data_error(body, with_header):
    text = (HEADER + "\n" + body) if with_header else body
    try:
        items = align_data.parse_index(text)
    except DataError:
        return
    for it in items:
        assert it.landmarks is None or (it.landmarks.shape == (5, 2) and np.all(np.isfinite(it.landmarks)))


def test_zip_members_decode_and_bad_ones_raise(tmp_path, monkeypatch):
    folder = tmp_path / "lfw"
    folder.mkdir()
    ok, png = cv2.imencode(".png", np.full((4, 4, 3), 7, np.uint8))
    with zipfile.ZipFile(folder / "lfw128.zip", "w") as zf:
        zf.writestr("lfw128/a.png", png.tobytes())
        zf.writestr("lfw128/junk.jpg", b"not an image")
    z = align_data.ImageZip(tmp_path, "lfw")
    assert z.read("lfw128/a.png").shape == (4, 4, 3)
    with pytest.raises(DataError):
        z.read("lfw128/junk.jpg")
    with pytest.raises(DataError):
        z.read("lfw128/missing.jpg")
    (folder / "lfw128.zip").write_bytes(b"PK but not a zip")
    with pytest.raises(DataError):
        align_data.ImageZip(tmp_path, "lfw")
    with pytest.raises(DataError):
        align_data.ImageZip(tmp_path, "nope")
