"""LFW View 2 through the exact board path: detect -> int8 alignment net -> 112 crop -> int8 embedding net.

One job: score a *bundle* the way a board would see LFW faces.  Each LFW128 image is pasted into a grey
frame (the detector needs context around the face), the board's own ``FaceModel`` (firmware/facemodel.py:
OpenCV cascade with the board file's detector settings, the bundle's int8 alignment net, the int8 embedding
net on the kernels' fastest path) embeds it, and the pairs are scored with the standard 10-fold protocol
(threshold from the other 9 folds).  Where the detector finds no face, the face's known LFW frame is used
instead, and the count of such images is reported beside the accuracy — never hidden.
Must not be imported by the firmware.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as D
from . import evaluate as E

#: grey border (px) around the 128x128 LFW image, so the cascade sees the whole head
PAD_PX = 64
PAD_VALUE = 128


@dataclass
class BoardPathResult:
    result: E.VerificationResult
    images: int
    undetected: int
    #: at the bundle's own θ and rule (a transfer check: θ was chosen on held-out CelebA identities): the share of
    #: matched pairs accepted (TAR) and of mismatched pairs accepted (FAR); with a cohort the pair's second image
    #: is the probe (its k-th nearest cohort distance divides the distance), as a live face is on the board
    accept_same: float = float("nan")
    accept_different: float = float("nan")
    theta: float = float("nan")
    rule: str = ""
    #: TAR at FAR 1e-3 over all pairs with the pair scored by the bundle's own rule (with a cohort: the distance over
    #: the second image's ``cohort_k``-th nearest cohort distance, the board's decision score; else the distance)
    tar_at_far_1e3_rule: float = float("nan")

    def at_theta_summary(self) -> str:
        return (f"at the bundle's θ {self.theta:.4f} ({self.rule}): matched pairs accepted "
                f"{100 * self.accept_same:.2f}%, mismatched pairs accepted {100 * self.accept_different:.2f}%; "
                f"TAR {100 * self.tar_at_far_1e3_rule:.2f}% at FAR 1e-3 scored by that rule")


def accept_at_theta(emb: np.ndarray, keys: list, pairs: D.PairsFile, theta: float, cohort: np.ndarray | None = None,
                    cohort_k: int = 10) -> tuple[float, float]:
    """(matched, mismatched) share of ``pairs`` the board's rule accepts at ``theta``: ``rule_scores`` < θ."""
    accepted = rule_scores(emb, keys, pairs, cohort, cohort_k) < theta
    same = pairs.same()
    return float(accepted[same].mean()), float(accepted[~same].mean())


def rule_scores(emb: np.ndarray, keys: list, pairs: D.PairsFile, cohort: np.ndarray | None = None,
                cohort_k: int = 10) -> np.ndarray:
    """Each pair's score as the board decides (lower: the same person): the distance, or with a ``cohort`` (M, D)
    the distance over the second image's ``cohort_k``-th nearest cohort distance (the second image plays the live
    face, the first the enrolled one: ``Gallery.match``)."""
    from wearface.firmware.gallery import cohort_distance

    index = {k: i for i, k in enumerate(keys)}
    a = np.array([index[(p.name1, p.index1)] for p in pairs.pairs])
    b = np.array([index[(p.name2, p.index2)] for p in pairs.pairs])
    score = np.linalg.norm(emb[a] - emb[b], axis=1)
    if cohort is not None:
        score = score / np.maximum(cohort_distance(emb[b], cohort, cohort_k), 1e-12)
    return score


def subset_pairs(pairs: D.PairsFile, per_fold_half: int) -> D.PairsFile:
    """The first ``per_fold_half`` matched and mismatched pairs of every fold (for quick runs and tests)."""
    if per_fold_half <= 0 or per_fold_half >= pairs.n_per_half:
        return pairs
    keep = []
    for fold in range(pairs.n_folds):
        fold_pairs = [p for p in pairs.pairs if p.fold == fold]
        keep += fold_pairs[:per_fold_half] + fold_pairs[pairs.n_per_half: pairs.n_per_half + per_fold_half]
    return D.PairsFile(pairs.n_folds, per_fold_half, tuple(keep))


class BoardPathCropper:
    """``crop(lfw128_rgb) -> uint8 (112, 112, 3) RGB`` as the board makes it; counts detector misses."""

    def __init__(self, face_model):
        from wearface.firmware import align as geo

        self.model, self.geo = face_model, geo
        self.undetected = 0
        side = 128 + 2 * PAD_PX
        self.frame = np.full((side, side, 3), PAD_VALUE, np.uint8)
        # the canonical 112 frame is LFW128[8:120]: its centre in the padded frame
        centre = PAD_PX + 8 + geo.FRAME_CENTRE
        self.known_window = geo.window_from_params((centre, centre), 1.0, 0.0)

    def crop(self, lfw128_rgb: np.ndarray) -> np.ndarray:
        frame = self.frame
        frame[PAD_PX:PAD_PX + 128, PAD_PX:PAD_PX + 128] = lfw128_rgb[:, :, ::-1]  # the board's frames are BGR
        boxes = self.model.detect(frame)
        if boxes:
            crop, _ = self.model.align(frame, boxes[0])
        else:
            self.undetected += 1
            crop, _ = self.model.align_window(frame, self.known_window)
        return crop


@dataclass
class LfwBoardPath:
    """LFW pairs' images embedded through the board path by one verified bundle."""

    emb: np.ndarray  # (N, D) float64, one row per entry of ``keys``
    keys: list  # (name, index) of each LFW image the pairs use
    pairs: D.PairsFile
    undetected: int  # images without a detection (their known LFW frame was used)
    bundle: object  # the verified firmware ``Bundle`` (θ, rule, cohort)


def lfw_board_path(bundle_path: str | Path, board_path: str | Path, lfw_root: str | Path,
                   pairs_path: str | Path | None = None, per_fold_half: int = 0,
                   progress: bool = False) -> LfwBoardPath:
    """Verify the bundle for the board (signature, golden vectors), then embed LFW's pair images through the board path."""
    from wearface.firmware.board import load_board
    from wearface.firmware.bundle import verify_bundle
    from wearface.firmware.facemodel import FaceModel

    board = load_board(board_path)
    bundle = verify_bundle(Path(bundle_path).read_bytes(), list(board.public_keys), board.compatible,
                           name=str(bundle_path))
    cropper = BoardPathCropper(FaceModel(board, bundle))
    lfw_zip, default_pairs, _ = D.lfw_paths(lfw_root)
    pairs = subset_pairs(D.read_pairs(pairs_path or default_pairs), per_fold_half)
    lfw = D.LfwImages(lfw_zip)

    def image_of(name: str, index: int) -> np.ndarray:
        member = D.lfw_member(name, index)
        return cropper.crop(D.decode_jpeg_rgb(lfw.raw_bytes(name, index), member))

    from tqdm import tqdm

    keys = D.pair_images(pairs)
    emb = np.stack([cropper.model.embed(image_of(*k)) for k in tqdm(keys, desc="embed", disable=not progress)])
    return LfwBoardPath(emb.astype(np.float64), keys, pairs, cropper.undetected, bundle)


def evaluate_bundle_board_path(bundle_path: str | Path, board_path: str | Path, lfw_root: str | Path,
                               pairs_path: str | Path | None = None, per_fold_half: int = 0,
                               progress: bool = False) -> BoardPathResult:
    """Verify the bundle for the board (signature, golden vectors), then score LFW through the board path."""
    lfw = lfw_board_path(bundle_path, board_path, lfw_root, pairs_path, per_fold_half, progress)
    emb, keys, pairs, bundle = lfw.emb, lfw.keys, lfw.pairs, lfw.bundle
    result = E.score_pairs(emb, keys, pairs)
    # a pair's first image is an enrolment of one image: with a table, that count's θ
    theta = float(bundle.threshold_by_count[0] if bundle.threshold_by_count else bundle.threshold)
    same, different = accept_at_theta(emb, keys, pairs, theta, bundle.cohort, bundle.cohort_k)
    tar_rule = E.tar_at_far(rule_scores(emb, keys, pairs, bundle.cohort, bundle.cohort_k), pairs.same())
    return BoardPathResult(result, len(keys), lfw.undetected, same, different, theta, bundle.rule, tar_rule)


@dataclass
class HeldoutBoardPath:
    """Embeddings of the held-out CelebA identities through the board path, clean and camera-damaged."""

    identities: np.ndarray  # (N,) CelebA identity numbers
    clean: np.ndarray  # (N, D) float32
    hard: np.ndarray  # (N, D) float32
    undetected_clean: int
    undetected_hard: int
    #: (M, D) float32: one clean image of each of M training identities through the same path, or None
    cohort: np.ndarray | None = None


def heldout_board_path(bundle_path: str | Path, board_path: str | Path, data_root: str | Path,
                       val_fraction: float = 0.05, seed: int = 0, identities: int = 0,
                       exclude: Iterable[int] = (), progress: bool = False, cohort: int = 0) -> HeldoutBoardPath:
    """The training split's held-out identities (``split_by_identity(..., val_fraction, seed)``, as the trainer
    makes it) through detect -> int8 align -> int8 embed.  Each 112 crop is put back into the LFW128 frame
    (8 px of replicated border) and then into the padded frame ``BoardPathCropper`` gives the detector; the
    damaged copy is ``batch_augment.hard_copy`` of the clean crops (fixed seed).  ``identities`` > 0: only the
    first N held-out identities (by identity number; for quick runs).  ``exclude``: identity numbers to leave
    out (those a model trained on, e.g. a pack made before packs kept the trainer's held-out split).
    ``cohort`` > 0: also embed the first image of that many training identities (random, seed ``seed``): strangers
    to every held-out identity, for the cohort-normalised rule (``heldout.open_set``)."""

    from wearface.firmware.board import load_board
    from wearface.firmware.bundle import verify_bundle
    from wearface.firmware.facemodel import FaceModel

    from .batch_augment import hard_copy
    from .face_tensor import decode_all

    board = load_board(board_path)
    bundle = verify_bundle(Path(bundle_path).read_bytes(), list(board.public_keys), board.compatible, name=str(bundle_path))
    cropper = BoardPathCropper(FaceModel(board, bundle))
    train, val = D.split_by_identity(D.drop_singletons(D.load_celeba(data_root)), val_fraction, seed)
    if len(exclude := np.asarray(list(exclude), np.int64)):
        val = val.subset(np.flatnonzero(~np.isin(val.identities, exclude)))
    if identities > 0:
        val = val.subset(np.flatnonzero(np.isin(val.identities, np.unique(val.identities)[:identities])))
    clean = decode_all(val)
    out, missed = {}, {}
    for name, imgs in (("clean", clean), ("hard", hard_copy(clean))):
        cropper.undetected = 0
        out[name], missed[name] = _embed_crops(cropper, imgs, f"board path, {name}", progress), cropper.undetected
    cohort_emb = _cohort(cropper, train, cohort, seed, progress) if cohort > 0 else None
    return HeldoutBoardPath(val.identities, out["clean"], out["hard"], missed["clean"], missed["hard"], cohort_emb)


def _cohort(cropper: BoardPathCropper, train, n: int, seed: int, progress: bool) -> np.ndarray:
    """(n, D) float32: the first image of ``n`` random training identities (seed ``seed``) through the board path."""
    from .face_tensor import decode_all

    ids = np.unique(train.identities)
    picked = np.random.default_rng(seed).choice(ids, min(n, len(ids)), replace=False)
    first = [int(np.flatnonzero(train.identities == i)[0]) for i in np.sort(picked)]
    return _embed_crops(cropper, decode_all(train.subset(np.asarray(first))), "board path, cohort", progress)


def _embed_crops(cropper: BoardPathCropper, crops, desc: str, progress: bool) -> np.ndarray:
    """(N, D) float32: 112x112 RGB crops put back into their LFW128 frame (8 px of replicated border), then the
    board path."""
    import cv2
    from tqdm import tqdm

    return np.asarray([cropper.model.embed(cropper.crop(cv2.copyMakeBorder(img, 8, 8, 8, 8, cv2.BORDER_REPLICATE)))
                       for img in tqdm(crops, desc=desc, disable=not progress, unit="face")], np.float32)


def board_path_cohort(bundle_bytes: bytes, board_path: str | Path, data_root: str | Path, n: int,
                      val_fraction: float = 0.05, seed: int = 0, progress: bool = False) -> np.ndarray:
    """A bundle's cohort: (n, D) float32 embeddings, by the bundle's own nets through the board path, of one image of
    each of ``n`` random *training* identities (the trainer's split: never a held-out identity, so the held-out
    figures stay clean).  CelebA-derived: a bundle that carries them carries CelebA's terms."""
    from wearface.firmware.board import load_board
    from wearface.firmware.bundle import read_bundle
    from wearface.firmware.facemodel import FaceModel

    cropper = BoardPathCropper(FaceModel(load_board(board_path), read_bundle(bundle_bytes, "bundle for its cohort")))
    train, _ = D.split_by_identity(D.drop_singletons(D.load_celeba(data_root)), val_fraction, seed)
    return _cohort(cropper, train, n, seed, progress)
