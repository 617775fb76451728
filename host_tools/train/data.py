"""Face data for training and evaluation: the shared zips read directly, LFW pairs files, splits, packs.

One job: give the trainer and the evaluator 112x112x3 RGB uint8 face crops (the embedding nets' input
frame: the LFW128 crop ``[8:120, 8:120]``) with identity labels, and LFW pairs.  Paths are arguments;
nothing here knows where ``../shared/data`` is.  No torch import (the torch ``Dataset`` lives in train.py).

Stable API (also used by the alignment helper):

* ``load_celeba(data_root, subsets=...) -> FaceRecords``; ``split_by_identity(records, val_fraction, seed)``.
* ``FaceRecords.decode(i) -> (112, 112, 3) uint8 RGB``; ``.landmarks`` (N, 5, 2) float32 in that frame
  (NaN where missing; order reye, leye, nose, rmouth, lmouth as in the CSVs).
* ``LfwImages(zip_path).crop112(name, index)``; ``parse_pairs(text, source)`` / ``read_pairs(path)``.
* ``write_pack`` / ``load_pack``: one ``.npz`` with WebP/JPEG bytes + labels (+ LFW dev pairs), for a GPU machine.

Sources and geometry (see the READMEs under ``shared/data``):

* ``celeba_wild128``: 128x128 in the LFW128 frame -> take ``[8:120, 8:120]``.
* ``celeba_more112``: already 112x112 in that frame.
* ``celeba_align89x109``: CelebA's own aligned images; mapped into the 112 frame by the similarity that
  takes their 5 pseudo-landmarks onto the mean LFW landmarks (minus 8 px).  Skipped when its landmarks are
  missing.  The wild and aligned subsets share 318 files: duplicates are dropped by CelebA file name
  (the first subset listed wins).
"""
from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError

CROP_SIZE = 112
#: Mean 5-point pseudo-landmarks on LFW128 (data/lfw/README.md) minus the 8 px border: the target of the
#: aligned-CelebA similarity warp.  Order: reye, leye, nose, rmouth, lmouth; (x, y) pixels.
LFW112_MEAN_LANDMARKS = np.array(
    [[39.7, 46.9], [72.3, 46.2], [56.4, 67.7], [42.7, 82.6], [71.1, 81.9]], dtype=np.float32
)
LANDMARK_COLUMNS = ("reye_x", "reye_y", "leye_x", "leye_y", "nose_x", "nose_y", "rmouth_x", "rmouth_y", "lmouth_x", "lmouth_y")

#: subset name -> (zip path, index csv path) relative to the data root
CELEBA_SUBSETS = {
    "wild": ("celeba/celeba_wild128.zip", "celeba/celeba_wild128_index.csv"),
    "more": ("celeba_more/celeba_more112.zip", "celeba_more/celeba_more112_index.csv"),
    "align": ("celeba/celeba_align89x109_first10k.zip", "celeba/celeba_align89x109_first10k_index.csv"),
}
DEFAULT_SUBSETS = ("wild", "more", "align")


def decode_jpeg_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """JPEG/PNG bytes -> (H, W, 3) uint8 RGB; raises DataError naming ``where`` if undecodable."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{where}: cannot decode image ({len(data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_jpeg_rgb(rgb: np.ndarray, quality: int, codec: str = "jpeg") -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG (4:2:0) or WebP bytes at ``quality`` 1..100 (OpenCV)."""
    import cv2

    ext, flag = {"jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY), "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY)}[codec]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise DataError(f"{codec} encoding failed")
    return buf.tobytes()


def similarity_to_mean(landmarks_xy: np.ndarray) -> np.ndarray | None:
    """2x3 similarity (rotation, uniform scale, shift) taking 5 landmarks onto ``LFW112_MEAN_LANDMARKS``."""
    import cv2

    if not np.all(np.isfinite(landmarks_xy)):
        return None
    m, _ = cv2.estimateAffinePartial2D(landmarks_xy.astype(np.float32), LFW112_MEAN_LANDMARKS, method=cv2.LMEDS)
    return None if m is None else m.astype(np.float32)


class _ZipCache:
    """Opens each zip once per process (a DataLoader worker re-opens after fork: zipfile is not fork-safe)."""

    def __init__(self):
        self._open: dict[str, zipfile.ZipFile] = {}

    def read(self, zip_path: str, member: str) -> bytes:
        zf = self._open.get(zip_path)
        if zf is None:
            try:
                zf = self._open[zip_path] = zipfile.ZipFile(zip_path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"{zip_path}: cannot open zip: {exc}") from None
        try:
            return zf.read(member)
        except KeyError:
            raise DataError(f"{zip_path}: no member {member!r}") from None

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._open = {}


@dataclass
class FaceRecords:
    """N face images with identity labels, decodable to the 112x112 RGB frame.

    Each image lives either in a zip (``zip_paths[zip_index[i]]`` member ``members[i]``) or as JPEG bytes in
    ``jpeg[i]`` (packs).  ``transforms[i]`` is how the decoded image reaches the 112 frame: ``None`` for
    112x112 images, a crop offset (8) for 128x128 ones, or a 2x3 warp matrix (aligned CelebA).
    """

    identities: np.ndarray  # (N,) int64, CelebA identity numbers
    celeba_files: list[str]
    subsets: list[str]
    landmarks: np.ndarray  # (N, 5, 2) float32 in the 112 frame, NaN where missing
    members: list[str] = field(default_factory=list)
    zip_index: np.ndarray | None = None
    zip_paths: list[str] = field(default_factory=list)
    jpeg: list[bytes] | None = None
    warps: list[np.ndarray | None] = field(default_factory=list)
    _zips: _ZipCache = field(default_factory=_ZipCache, repr=False)

    def __len__(self) -> int:
        return len(self.identities)

    def labels(self) -> np.ndarray:
        """Contiguous labels 0..n_identities-1 (sorted by identity number), int64 (N,)."""
        _, inv = np.unique(self.identities, return_inverse=True)
        return inv.astype(np.int64)

    def raw_bytes(self, i: int) -> bytes:
        if self.jpeg is not None:
            return self.jpeg[i]
        return self._zips.read(self.zip_paths[self.zip_index[i]], self.members[i])

    def decode(self, i: int) -> np.ndarray:
        """Image ``i`` as (112, 112, 3) uint8 RGB in the embedding nets' input frame."""
        where = self.members[i] if self.members else f"pack image {i}"
        img = decode_jpeg_rgb(self.raw_bytes(i), where)
        warp = self.warps[i] if self.warps else None
        if warp is not None:
            import cv2

            return cv2.warpAffine(img, warp, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crop_to_112(img, where)

    def subset(self, index: Sequence[int]) -> "FaceRecords":
        """A new FaceRecords holding the images at ``index`` (sharing the zips)."""
        index = np.asarray(index, dtype=np.int64)
        pick = lambda seq: [seq[i] for i in index] if seq else seq  # noqa: E731
        return FaceRecords(
            identities=self.identities[index],
            celeba_files=pick(self.celeba_files),
            subsets=pick(self.subsets),
            landmarks=self.landmarks[index],
            members=pick(self.members),
            zip_index=None if self.zip_index is None else self.zip_index[index],
            zip_paths=self.zip_paths,
            jpeg=None if self.jpeg is None else [self.jpeg[i] for i in index],
            warps=pick(self.warps),
        )


def crop_to_112(img: np.ndarray, where: str = "image") -> np.ndarray:
    """128x128 (LFW128 frame) -> centre [8:120, 8:120]; 112x112 unchanged; anything else is a DataError."""
    h, w = img.shape[:2]
    if (h, w) == (CROP_SIZE, CROP_SIZE):
        return img
    if (h, w) == (128, 128):
        return img[8:120, 8:120]
    raise DataError(f"{where}: expected a 112x112 or 128x128 image, found {w}x{h}")


def _landmarks_from_row(row: dict, where: str) -> np.ndarray:
    vals = []
    for col in LANDMARK_COLUMNS:
        v = row.get(col, "")
        try:
            vals.append(float(v) if v not in ("", None) else np.nan)
        except ValueError:
            raise DataError(f"{where}: column {col} is not a number: {v!r}") from None
    return np.array(vals, dtype=np.float32).reshape(5, 2)


def load_celeba(data_root: str | Path, subsets: Iterable[str] = DEFAULT_SUBSETS) -> FaceRecords:
    """Index the CelebA subsets under ``data_root`` (``shared/data``); no image is decoded here.

    De-duplicates by CelebA file name (the first subset in ``subsets`` keeps a shared file).  Aligned
    CelebA images without landmarks are left out (they cannot be mapped into the 112 frame).
    """
    root = Path(data_root)
    identities, files, subs, lms, members, zidx, warps = [], [], [], [], [], [], []
    zip_paths: list[str] = []
    seen: set[str] = set()
    for name in subsets:
        if name not in CELEBA_SUBSETS:
            raise DataError(f"unknown CelebA subset {name!r}; expected one of {sorted(CELEBA_SUBSETS)}")
        zip_rel, csv_rel = CELEBA_SUBSETS[name]
        zip_path, csv_path = root / zip_rel, root / csv_rel
        for p in (zip_path, csv_path):
            if not p.is_file():
                raise DataError(f"{p}: missing (expected the shared data layout under {root})")
        zip_paths.append(str(zip_path))
        with open(csv_path, newline="") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                where = f"{csv_path}:{line_no}"
                try:
                    celeba_file, identity, member = row["celeba_file"], int(row["identity"]), row["path"]
                except (KeyError, ValueError, TypeError) as exc:
                    raise DataError(f"{where}: bad row ({exc})") from None
                if celeba_file in seen:
                    continue
                lm = _landmarks_from_row(row, where)
                warp = None
                if name == "align":
                    warp = similarity_to_mean(lm)
                    if warp is None:
                        continue
                    lm = lm @ warp[:, :2].T + warp[:, 2]
                elif name == "wild":
                    lm = lm - 8.0
                seen.add(celeba_file)
                identities.append(identity)
                files.append(celeba_file)
                subs.append(name)
                lms.append(lm)
                members.append(member)
                zidx.append(len(zip_paths) - 1)
                warps.append(warp)
    return FaceRecords(
        identities=np.array(identities, dtype=np.int64),
        celeba_files=files,
        subsets=subs,
        landmarks=np.array(lms, dtype=np.float32).reshape(-1, 5, 2),
        members=members,
        zip_index=np.array(zidx, dtype=np.int64),
        zip_paths=zip_paths,
        warps=warps,
    )


def drop_singletons(records: FaceRecords) -> FaceRecords:
    """Keep only identities with 2 or more images (a metric-learning batch needs positives)."""
    ids, counts = np.unique(records.identities, return_counts=True)
    keep = np.isin(records.identities, ids[counts >= 2])
    return records.subset(np.flatnonzero(keep))


def split_by_identity(records: FaceRecords, val_fraction: float = 0.05, seed: int = 0) -> tuple[FaceRecords, FaceRecords]:
    """Identity-disjoint (train, val): a seeded random ``val_fraction`` of the identities goes to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = np.unique(records.identities)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(ids)))
    val_ids = rng.choice(ids, size=n_val, replace=False) if n_val else np.array([], dtype=np.int64)
    is_val = np.isin(records.identities, val_ids)
    return records.subset(np.flatnonzero(~is_val)), records.subset(np.flatnonzero(is_val))


# ----------------------------------------------------------------------------------------------- LFW


@dataclass(frozen=True)
class Pair:
    """One LFW pair: image ``index`` is 1-based as in pairs.txt (file ``<name>_<index:04d>.jpg``)."""

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int


@dataclass(frozen=True)
class PairsFile:
    """A parsed pairs file: ``n_folds`` folds of ``n_per_half`` matched then ``n_per_half`` mismatched pairs."""

    n_folds: int
    n_per_half: int
    pairs: tuple

    def folds(self) -> np.ndarray:
        return np.array([p.fold for p in self.pairs], dtype=np.int64)

    def same(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)


_NAME_RE = re.compile(r"^[^\s/\\]+$")


def _parse_index(tok: str, where: str) -> int:
    if not tok.isdigit() or int(tok) < 1:
        raise DataError(f"{where}: image number must be a positive integer, found {tok!r}")
    return int(tok)


def _parse_name(tok: str, where: str) -> str:
    if not _NAME_RE.match(tok) or tok.isdigit():
        raise DataError(f"{where}: expected a person's name (no '/', not a number), found {tok!r}")
    return tok


def parse_pairs(text: str, source: str = "pairs") -> PairsFile:
    """Parse an LFW pairs file: View 2 (``pairs.txt``, header ``10<TAB>300``) or View 1 (header ``N``).

    Each fold is ``n`` matched lines ``name i j`` followed by ``n`` mismatched lines ``name1 i name2 j``
    (View 1: one fold).  Raises DataError with the line number on any malformed or missing line.
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{source}:1: empty file; expected a header '<folds> <pairs per half>' or '<pairs per half>'")
    head = lines[0].split()
    if len(head) == 1:
        n_folds, n_half = 1, head[0]
    elif len(head) == 2:
        n_folds, n_half = head
    else:
        raise DataError(f"{source}:1: header must have 1 or 2 numbers, found {lines[0]!r}")
    try:
        n_folds, n_half = int(n_folds), int(n_half)
    except ValueError:
        raise DataError(f"{source}:1: header must be integers, found {lines[0]!r}") from None
    if n_folds < 1 or n_half < 1:
        raise DataError(f"{source}:1: header numbers must be positive, found {lines[0]!r}")
    expected = n_folds * 2 * n_half
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()
    if len(body) != expected:
        raise DataError(f"{source}: header says {n_folds} x 2 x {n_half} = {expected} pair lines, found {len(body)}")
    pairs = []
    for k, line in enumerate(body):
        where = f"{source}:{k + 2}"
        fold, pos = divmod(k, 2 * n_half)
        same = pos < n_half
        tok = line.split()
        if same:
            if len(tok) != 3:
                raise DataError(f"{where}: expected a matched pair 'name i j' (3 fields), found {len(tok)}: {line!r}")
            name = _parse_name(tok[0], where)
            pairs.append(Pair(name, _parse_index(tok[1], where), name, _parse_index(tok[2], where), True, fold))
        else:
            if len(tok) != 4:
                raise DataError(f"{where}: expected a mismatched pair 'name1 i name2 j' (4 fields), found {len(tok)}: {line!r}")
            pairs.append(
                Pair(_parse_name(tok[0], where), _parse_index(tok[1], where), _parse_name(tok[2], where),
                     _parse_index(tok[3], where), False, fold)
            )
    return PairsFile(n_folds, n_half, tuple(pairs))


def read_pairs(path: str | Path) -> PairsFile:
    """Read and parse a pairs file (see ``parse_pairs``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read pairs file: {exc}") from None
    return parse_pairs(text, str(path))


def lfw_member(name: str, index: int) -> str:
    """The zip member of LFW image ``index`` (1-based) of ``name``."""
    return f"lfw128/{name}/{name}_{index:04d}.jpg"


class LfwImages:
    """LFW128 images from ``lfw128.zip``, returned as the 112x112 RGB input crop ``[8:120, 8:120]``."""

    def __init__(self, zip_path: str | Path):
        self.zip_path = str(zip_path)
        if not Path(zip_path).is_file():
            raise DataError(f"{zip_path}: LFW zip missing")
        self._zips = _ZipCache()

    def raw_bytes(self, name: str, index: int) -> bytes:
        return self._zips.read(self.zip_path, lfw_member(name, index))

    def crop112(self, name: str, index: int) -> np.ndarray:
        member = lfw_member(name, index)
        return crop_to_112(decode_jpeg_rgb(self.raw_bytes(name, index), member), member)


def pair_images(pairs: PairsFile) -> list[tuple[str, int]]:
    """The distinct (name, index) images a pairs file refers to, in first-use order."""
    seen: dict[tuple[str, int], None] = {}
    for p in pairs.pairs:
        seen.setdefault((p.name1, p.index1))
        seen.setdefault((p.name2, p.index2))
    return list(seen)


def lfw_paths(lfw_root: str | Path) -> tuple[Path, Path, Path]:
    """(lfw128.zip, pairs.txt, pairsDevTest.txt) under ``lfw_root`` (the ``lfw`` folder or the data root)."""
    root = Path(lfw_root)
    if (root / "lfw").is_dir() and not (root / "lfw128.zip").exists():
        root = root / "lfw"
    return root / "lfw128.zip", root / "pairs.txt", root / "pairsDevTest.txt"


# ---------------------------------------------------------------------------------------------- packs

PACK_VERSION = 1


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(), offsets


def _split(blob: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    raw = blob.tobytes()
    return [raw[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def write_pack(
    out_path: str | Path,
    train: FaceRecords,
    val: FaceRecords,
    lfw_zip: str | Path | None,
    lfw_dev_pairs: PairsFile | None,
    max_bytes: int,
    qualities: Sequence[int] = (95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 45, 40, 35, 30, 25),
    lfw_quality: int = 95,
    codec: str = "webp",
    progress: bool = True,
) -> dict:
    """Re-encode train+val crops (112x112) at the highest quality that fits ``max_bytes``; save one .npz.

    ``codec``: ``webp`` (default) or ``jpeg``.  WebP because at 112x112 a JPEG's fixed headers and
    tables (~600 bytes) dominate: all 31k training crops need JPEG quality < 40 to fit 55 MiB, WebP fits
    them at quality ~75-80 (measured on a 300-image sample: 1.6 kB vs 2.8 kB per crop at quality 75).
    ``cv2.imdecode`` reads both.  The LFW View 1 dev-test images (for the per-epoch dev accuracy) go in at
    ``lfw_quality``.  Returns the pack's metadata (also stored in it).  The quality is picked from a
    400-image sample with 2% headroom; it may go down to 25, a damage the training's own camera damage (JPEG
    quality 12-50 on 10% of images) already teaches the nets to ignore.
    """
    from tqdm import tqdm

    records = [train, val]
    n = len(train) + len(val)
    lfw_blobs: list[bytes] = []
    lfw_keys: list[tuple[str, int]] = []
    if lfw_zip is not None and lfw_dev_pairs is not None:
        lfw = LfwImages(lfw_zip)
        lfw_keys = pair_images(lfw_dev_pairs)
        lfw_blobs = [encode_jpeg_rgb(lfw.crop112(nm, ix), lfw_quality, codec) for nm, ix in lfw_keys]
    lfw_blob, lfw_offsets = _concat(lfw_blobs)
    cat = lambda attr: [x for r in records for x in getattr(r, attr)]  # noqa: E731
    arrays = dict(
        identities=np.concatenate([train.identities, val.identities]),
        is_val=np.concatenate([np.zeros(len(train), bool), np.ones(len(val), bool)]),
        landmarks=np.concatenate([train.landmarks, val.landmarks]).astype(np.float32),
        celeba_files=np.array(cat("celeba_files"), dtype="S16"),
        subsets=np.array(cat("subsets"), dtype="S8"),
        lfw_jpeg=lfw_blob,
        lfw_offsets=lfw_offsets,
        lfw_names=np.array([k[0] for k in lfw_keys], dtype="S64"),
        lfw_indices=np.array([k[1] for k in lfw_keys], dtype=np.int64),
    )
    meta = {"version": PACK_VERSION, "codec": codec, "n_train": len(train), "n_val": len(val),
            "n_train_identities": int(len(np.unique(train.identities))),
            "n_val_identities": int(len(np.unique(val.identities))),
            "lfw_dev_images": len(lfw_keys), "lfw_quality": lfw_quality}
    if lfw_dev_pairs is not None:
        key_index = {k: i for i, k in enumerate(lfw_keys)}
        arrays["lfw_pairs"] = np.array([[key_index[(p.name1, p.index1)], key_index[(p.name2, p.index2)], int(p.same), p.fold]
                                        for p in lfw_dev_pairs.pairs], dtype=np.int32)
        meta["lfw_dev_header"] = [lfw_dev_pairs.n_folds, lfw_dev_pairs.n_per_half]
    fixed_bytes = sum(v.nbytes for v in arrays.values()) + 8 * (n + 1) + 100_000  # + offsets + zip headers
    budget = max_bytes - fixed_bytes
    if budget <= 0:
        raise DataError(f"pack limit {max_bytes} bytes is too small: labels and LFW dev images alone take {fixed_bytes}")
    rng = np.random.default_rng(0)
    sample_imgs = [r.decode(int(i)) for r in records for i in rng.choice(len(r), size=min(len(r), 200), replace=False)]
    start = len(qualities) - 1
    for j, q in enumerate(qualities):
        if np.mean([len(encode_jpeg_rgb(im, q, codec)) for im in sample_imgs]) * n * 1.01 <= budget:
            start = j
            break
    for q in qualities[start:]:  # the sample can be off: re-encode one step lower until the whole set fits
        blobs = [encode_jpeg_rgb(r.decode(i), q, codec) for r in records
                 for i in tqdm(range(len(r)), desc=f"pack {codec} q{q}", disable=not progress, unit="img")]
        if sum(map(len, blobs)) <= budget:
            break
    else:
        raise DataError(f"{n} images do not fit {max_bytes} bytes even at {codec} quality {qualities[-1]}")
    arrays["jpeg"], arrays["offsets"] = _concat(blobs)
    meta["quality"] = q
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out_path = Path(out_path)
    with open(out_path, "wb") as fh:
        np.savez(fh, **arrays)
    meta["size_bytes"] = out_path.stat().st_size
    return meta


@dataclass
class Pack:
    """A loaded pack: train/val ``FaceRecords`` backed by JPEG bytes, and the LFW dev pairs with their images."""

    meta: dict
    train: FaceRecords
    val: FaceRecords
    lfw_dev_pairs: PairsFile | None
    lfw_jpeg: dict  # (name, index) -> JPEG bytes of the 112 crop


def load_pack(path: str | Path) -> Pack:
    """Read a pack written by ``write_pack``; raises DataError if it is not one."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(z["meta"].tobytes().decode())
        if meta.get("version") != PACK_VERSION:
            raise DataError(f"{path}: pack version {meta.get('version')}, expected {PACK_VERSION}")
        jpeg = _split(z["jpeg"], z["offsets"])
        identities, is_val = z["identities"], z["is_val"]
        landmarks = z["landmarks"]
        files, subsets = [s.decode() for s in z["celeba_files"]], [s.decode() for s in z["subsets"]]
        keys = list(zip([s.decode() for s in z["lfw_names"]], map(int, z["lfw_indices"])))
        lfw = dict(zip(keys, _split(z["lfw_jpeg"], z["lfw_offsets"])))
        pairs = None
        if "lfw_pairs" in z.files:
            n_folds, n_half = meta["lfw_dev_header"]
            pairs = PairsFile(n_folds, n_half, tuple(
                Pair(*keys[a], *keys[b], bool(same), int(fold)) for a, b, same, fold in z["lfw_pairs"].tolist()))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a wearface data pack ({exc})") from None
    allrec = FaceRecords(identities=identities.astype(np.int64), celeba_files=files, subsets=subsets, landmarks=landmarks,
                         jpeg=jpeg)
    return Pack(meta, allrec.subset(np.flatnonzero(~is_val)), allrec.subset(np.flatnonzero(is_val)), pairs, lfw)


def is_pack(path: str | Path) -> bool:
    return Path(path).is_file() and str(path).endswith(".npz")


# ------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Training augmentation on 112x112 RGB uint8: flip, small similarity jitter, brightness/contrast, blur.

    Jitter: shift up to ``shift_px`` pixels, rotation up to ``rotate_deg`` degrees, scale within
    ``1 ± scale``; borders replicate the edge.  Brightness adds up to ``± brightness`` (in 0..255 units),
    contrast multiplies around the mean by ``1 ± contrast``; blur is a 3x3 Gaussian with probability ``blur_p``.
    """

    flip: bool = True
    shift_px: float = 4.0
    rotate_deg: float = 8.0
    scale: float = 0.06
    brightness: float = 20.0
    contrast: float = 0.2
    blur_p: float = 0.2

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
        angle = rng.uniform(-self.rotate_deg, self.rotate_deg)
        s = 1.0 + rng.uniform(-self.scale, self.scale)
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, s)
        m[:, 2] += rng.uniform(-self.shift_px, self.shift_px, size=2)
        img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.blur_p and rng.random() < self.blur_p:
            img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.5, 1.2))
        x = img.astype(np.float32)
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        x = (x - x.mean()) * c + x.mean() + rng.uniform(-self.brightness, self.brightness)
        return np.clip(x, 0, 255).astype(np.uint8)
