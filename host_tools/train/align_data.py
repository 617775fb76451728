"""Face crops with their 5-point pseudo-landmarks, read straight from the shared zips, for the
geometry work (detector measurement, alignment training and evaluation).

One job: list a source's images with landmarks, and decode them (BGR uint8).  Imports numpy and
OpenCV only.  Nothing here is committed data: paths come from the caller (``../shared/data``).
"""
from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError

LANDMARK_COLUMNS = (
    "reye_x", "reye_y", "leye_x", "leye_y", "nose_x", "nose_y", "rmouth_x", "rmouth_y", "lmouth_x", "lmouth_y",
)


@dataclass(frozen=True)
class Source:
    """A zip of face images and its index CSV, relative to the data folder.

    ``frame_offset_px``: where canonical 112-frame pixel (0, 0) sits in the stored image (8 for the
    LFW128 framing, 0 for 112 crops), or None where the stored image has no fixed framing.
    """

    name: str
    zip_path: str
    index_path: str
    frame_offset_px: float | None


SOURCES = {
    "lfw": Source("lfw", "lfw/lfw128.zip", "lfw/lfw128_index.csv", 8.0),
    "wild": Source("wild", "celeba/celeba_wild128.zip", "celeba/celeba_wild128_index.csv", 8.0),
    "more": Source("more", "celeba_more/celeba_more112.zip", "celeba_more/celeba_more112_index.csv", 0.0),
    "aligned": Source("aligned", "celeba/celeba_align89x109_first10k.zip", "celeba/celeba_align89x109_first10k_index.csv", None),
}


@dataclass(frozen=True)
class Item:
    """One image: its zip member, identity (string) and landmarks (5, 2) float64 in stored-image
    pixels (rows reye, leye, nose, rmouth, lmouth), or None where the CSV has none."""

    path: str
    identity: str
    landmarks: np.ndarray | None


def read_index(data_dir, source: str) -> list[Item]:
    """All rows of a source's index CSV, in file order."""
    src = _source(source)
    path = Path(data_dir) / src.index_path
    if not path.is_file():
        raise DataError(f"{path}: index CSV not found (is --data the shared data folder?)")
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return parse_index(fh.read(), str(path))


def parse_index(text: str, where: str = "index") -> list[Item]:
    """Rows of an index CSV (``path``, ``identity`` and the 10 landmark columns; others ignored).
    Landmarks empty in all 10 columns -> None; anything else that is not 10 numbers is a DataError."""
    import io

    items = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = reader.fieldnames or []
        missing = [c for c in ("path", "identity", *LANDMARK_COLUMNS) if c not in fields]
        if missing:
            raise DataError(f"{where}: missing columns {missing}; found {fields}")
        for line, row in enumerate(reader, start=2):
            values = [row.get(c) for c in LANDMARK_COLUMNS]
            if row.get("path") in (None, "") or row.get("identity") is None:
                raise DataError(f"{where}:{line}: row has no path or identity: {row}")
            if all(v == "" for v in values):
                lm = None
            else:
                try:
                    lm = np.array([float(v) for v in values], dtype=np.float64).reshape(5, 2)
                except (TypeError, ValueError):
                    raise DataError(f"{where}:{line}: landmark columns must be 10 numbers, got {values}") from None
                if not np.all(np.isfinite(lm)):
                    raise DataError(f"{where}:{line}: landmarks must be finite, got {values}")
            items.append(Item(row["path"], row["identity"], lm))
    except csv.Error as exc:
        raise DataError(f"{where}: not a CSV index ({exc})") from None
    return items


def _source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown source {name!r}; expected one of {sorted(SOURCES)}") from None


class ImageZip:
    """Decode members of a (stored) zip as BGR uint8 images.  Open one per process."""

    def __init__(self, data_dir, source: str):
        self.source = _source(source)
        self.path = Path(data_dir) / self.source.zip_path
        if not self.path.is_file():
            raise DataError(f"{self.path}: zip not found")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{self.path}: not a readable zip ({exc})") from None

    def read(self, member: str) -> np.ndarray:
        try:
            data = self._zip.read(member)
        except KeyError:
            raise DataError(f"{self.path}: no member {member!r}") from None
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DataError(f"{self.path}: member {member!r} unreadable ({exc})") from None
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{self.path}: member {member!r} is not a decodable image")
        return img

    def close(self) -> None:
        self._zip.close()
