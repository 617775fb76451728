"""dlib's face-recognition ResNet as a distillation teacher: descriptors for our 112x112 crops, cached in a file.

One job: compute (once), store and read back the teacher's 128-d descriptor of every training face.  The
student (``distill.py``) only reads the cache; dlib is needed only to fill it (the ``distill`` extra:
``dlib-bin`` for a prebuilt dlib, ``face-recognition-models`` for the CC0 model files).

How the teacher sees an image (the recipe in ``shared/FINDINGS.md``, checked on LFW by ``teacher_lfw_check``):

1. the image in the embedding nets' 112x112 RGB frame (LFW128 minus 8 px; ``data.FaceRecords.decode``);
2. dlib's ``shape_predictor_5_face_landmarks`` on the fixed box ``TEACHER_BOX_112`` = (left 15, top 25,
   right 100, bottom 110) pixels — the median MediaPipe face box on LFW moved into the 112 frame — instead of
   dlib's own detector (our crops are already framed; the detector misses some of them);
3. dlib's own 5-point alignment to a 150x150 chip with padding 0.25 (``compute_face_descriptor``'s
   defaults, no jitter) and the ResNet: a 128-d float descriptor (dlib's threshold: distance 0.6).

Cache file (``.npz``, never committed; the user names it): ``keys`` (N,) byte strings, ``descriptors``
(N, 128) float32 as the teacher returns them (not normalised), ``meta`` (JSON bytes: format version, box,
frame).  Keys name an image independently of any split: ``celeba:<celeba file name>`` for CelebA,
``video:<file name>:<frame>:<face>`` for faces cut from a video.  Writes are atomic (temp file + rename)
every ``save_every`` images, so an interrupted run resumes where it stopped and a cut never leaves a
half-written cache.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import DataError, HostToolError

CACHE_VERSION = 1
DESCRIPTOR_DIM = 128
#: (left, top, right, bottom) of the face box handed to dlib's 5-point predictor, in the 112x112 frame
TEACHER_BOX_112 = (15, 25, 100, 110)


class TeacherMissingError(HostToolError):
    """dlib or its model files are not installed (``pip install -e .[distill]``)."""

    exit_code = 3


def teacher_model_paths() -> tuple[Path, Path]:
    """(5-point shape predictor, ResNet) ``.dat`` files from the ``face_recognition_models`` package.

    Found through the package's location rather than imported: its ``__init__`` needs ``pkg_resources``,
    which recent setuptools no longer ship."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherMissingError("the teacher's model files are missing: pip install face-recognition-models "
                                  "(or the project's 'distill' extra)")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    sp, net = models / "shape_predictor_5_face_landmarks.dat", models / "dlib_face_recognition_resnet_model_v1.dat"
    for p in (sp, net):
        if not p.is_file():
            raise TeacherMissingError(f"{p}: missing from the face_recognition_models package")
    return sp, net


class Teacher:
    """dlib's ResNet on 112x112 RGB uint8 crops -> (128,) float32 descriptors (not normalised)."""

    def __init__(self, box: Sequence[int] = TEACHER_BOX_112):
        try:
            import dlib
        except ImportError:
            raise TeacherMissingError("dlib is not installed: pip install dlib-bin (or the project's 'distill' extra)") from None
        sp, net = teacher_model_paths()
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(sp))
        self.net = dlib.face_recognition_model_v1(str(net))
        self.box = dlib.rectangle(*map(int, box))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataError(f"teacher input must be HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        shape = self.shape_predictor(rgb, self.box)
        return np.asarray(self.net.compute_face_descriptor(rgb, shape), dtype=np.float32)


# ------------------------------------------------------------------------------------------- the cache
@dataclass
class DescriptorCache:
    """Teacher descriptors by image key; ``path`` is where ``save`` writes (atomically)."""

    path: Path
    keys: list[str]
    descriptors: np.ndarray  # (N, 128) float32

    def __post_init__(self):
        self.index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors (n, 128) float32 with NaN rows for unknown keys, found (n,) bool)."""
        out = np.full((len(keys), DESCRIPTOR_DIM), np.nan, dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for j, k in enumerate(keys):
            i = self.index.get(k)
            if i is not None:
                out[j], found[j] = self.descriptors[i], True
        return out, found

    def add(self, keys: Sequence[str], descriptors: np.ndarray) -> None:
        descriptors = np.asarray(descriptors, dtype=np.float32).reshape(-1, DESCRIPTOR_DIM)
        if len(keys) != len(descriptors):
            raise DataError(f"{len(keys)} keys for {len(descriptors)} descriptors")
        new = [(k, d) for k, d in zip(keys, descriptors) if k not in self.index]
        if not new:
            return
        for k, _ in new:
            self.index[k] = len(self.keys)
            self.keys.append(k)
        self.descriptors = np.concatenate([self.descriptors, np.stack([d for _, d in new])])

    def save(self) -> None:
        meta = {"version": CACHE_VERSION, "box_112": list(TEACHER_BOX_112), "frame": "112x112 RGB, LFW128 minus 8 px",
                "teacher": "dlib_face_recognition_resnet_model_v1 (150x150 chip, padding 0.25, no jitter)"}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array([k.encode() for k in self.keys], dtype=object).astype("S"),
                     descriptors=self.descriptors.astype(np.float32),
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def new_cache(path: str | Path) -> DescriptorCache:
    return DescriptorCache(Path(path), [], np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32))


def load_cache(path: str | Path, missing_ok: bool = False) -> DescriptorCache:
    """Read a cache written by ``DescriptorCache.save``; a clear DataError for anything else."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return new_cache(path)
        raise DataError(f"{path}: no teacher descriptor cache (make one with `wearface teacher descriptors`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            raw_keys, desc = z["keys"], z["descriptors"]
    except Exception as exc:  # np.load raises many kinds (zip, pickle, value, EOF) on a damaged file
        raise DataError(f"{path}: not a teacher descriptor cache ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise DataError(f"{path}: teacher cache version {meta.get('version') if isinstance(meta, dict) else meta!r}, "
                        f"expected {CACHE_VERSION}")
    if raw_keys.ndim != 1 or raw_keys.dtype.kind != "S":
        raise DataError(f"{path}: keys must be a 1-D byte-string array, got {raw_keys.dtype} {raw_keys.shape}")
    if desc.shape != (len(raw_keys), DESCRIPTOR_DIM) or desc.dtype not in (np.float32, np.float16):
        raise DataError(f"{path}: descriptors must be ({len(raw_keys)}, {DESCRIPTOR_DIM}) float32 (or float16: a "
                        f"half-size copy for a GPU machine), got {desc.dtype} {desc.shape}")
    desc = desc.astype(np.float32)
    if not np.isfinite(desc).all():
        raise DataError(f"{path}: descriptors hold NaN or infinity")
    try:
        keys = [k.decode() for k in raw_keys]
    except UnicodeDecodeError:
        raise DataError(f"{path}: a key is not UTF-8") from None
    if len(set(keys)) != len(keys):
        raise DataError(f"{path}: duplicate keys")
    return DescriptorCache(path, keys, desc.copy())


# -------------------------------------------------------------------------------------- computing them
def celeba_key(celeba_file: str) -> str:
    return f"celeba:{celeba_file}"


_WORKER_TEACHER = None  # one per worker process, built by _start_worker


def _start_worker(teacher_factory) -> None:
    global _WORKER_TEACHER
    _WORKER_TEACHER = teacher_factory()


def _worker_embed(job):
    """Pool worker: (keys, images) -> (keys, descriptors)."""
    keys, images = job
    return keys, np.stack([_WORKER_TEACHER(im) for im in images])


def compute_descriptors(cache: DescriptorCache, items: Sequence[tuple[str, Callable[[], np.ndarray]]], workers: int = 0,
                        chunk: int = 32, save_every: int = 1024, progress: bool = True,
                        teacher_factory: Callable[[], Callable[[np.ndarray], np.ndarray]] = Teacher) -> int:
    """Fill ``cache`` with the teacher's descriptor of every ``(key, load_image)`` it lacks; returns how many it added.

    ``load_image()`` -> 112x112x3 uint8 RGB (decoded in this process, embedded in ``workers`` processes; 0 means
    one per CPU).  Saves every ``save_every`` new descriptors and at the end.  ``teacher_factory`` builds the
    embedding function once per process (``Teacher``; tests pass a cheap stand-in)."""
    from multiprocessing import get_context

    from tqdm import tqdm

    todo = [(k, f) for k, f in items if k not in cache]
    if not todo:
        return 0
    workers = workers or os.cpu_count() or 1

    def jobs() -> Iterable:
        for s in range(0, len(todo), chunk):
            part = todo[s : s + chunk]
            yield [k for k, _ in part], [f() for _, f in part]

    done, unsaved, pool = 0, 0, None
    bar = tqdm(total=len(todo), disable=not progress, unit="img", desc="teacher descriptors", dynamic_ncols=True)
    try:
        if workers == 1:
            _start_worker(teacher_factory)  # this process is the one worker
            results = map(_worker_embed, jobs())
        else:
            pool = get_context("fork").Pool(workers, initializer=_start_worker, initargs=(teacher_factory,))
            results = pool.imap(_worker_embed, jobs())
        for keys, desc in results:
            cache.add(keys, desc)
            done += len(keys)
            unsaved += len(keys)
            bar.update(len(keys))
            if unsaved >= save_every:
                cache.save()
                unsaved = 0
    finally:
        bar.close()
        if unsaved:
            cache.save()
        if pool is not None:
            pool.terminate()
    return done


def celeba_items(records) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """``(key, load_image)`` for every CelebA record (``data.FaceRecords``)."""
    return [(celeba_key(f), (lambda i=i: records.decode(i))) for i, f in enumerate(records.celeba_files)]
