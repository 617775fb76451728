"""Face detection with MediaPipe's BlazeFace nets, run by OpenCV's DNN module: boxes in frame pixels.

The same job and interface as ``detect.FaceDetector`` (frame -> ``FaceBox``es, best first), for the board files
whose ``[detector] kind`` is ``"blazeface"``.  numpy + OpenCV only: ``cv2.dnn.readNetFromTFLite`` reads the
nets' TFLite files (float32), so the board needs no TFLite runtime.

The nets (``firmware/detectors/``, see its NOTICE; Apache-2.0, Google): ``face_detection_full_range`` (192x192
input, one 48x48 grid of anchors: faces from ~8 px of the letterboxed input, i.e. small faces in a whole frame)
and ``face_detection_short_range`` (128x128, 16x16 + 8x8 grids: a face that fills a good part of its input, i.e.
a region around a known face).  Their raw outputs are decoded here as MediaPipe's graphs decode them
(``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``, weighted non-maximum suppression); the constants
are those graphs' options.

Boxes are returned in the Haar cascade's convention (``detect.face_window`` and the tracker expect its size
and centre for a face): BlazeFace's own box, moved and scaled by ``BLAZE_TO_HAAR_*``, measured on LFW
(docs/BENCHMARKS.md "Issue 16, session 7").  ``FaceBox.score`` is the net's probability (0-1).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from .detect import FaceBox
from .errors import DetectError

#: where the nets' files ship (package data)
DETECTORS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detectors")


@dataclass(frozen=True)
class BlazeNet:
    """One BlazeFace net's file and its MediaPipe graph options: input side (px), anchor strides per layer,
    whether each layer location also has the interpolated anchor, the score threshold."""

    file: str
    input_px: int
    strides: tuple
    interpolated: bool
    min_score: float


#: the nets by their ``[detector] net`` names
NETS = {
    "full_range": BlazeNet("face_detection_full_range.tflite", 192, (4,), False, 0.6),
    "short_range": BlazeNet("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5),
}

#: raw box values are in input px; keypoints follow the box (x, y each)
NUM_KEYPOINTS = 6
#: MediaPipe clips raw scores to +-100 before the sigmoid
SCORE_CLIP = 100.0
#: boxes overlapping the best remaining box by more than this IoU are merged into it (weighted NMS)
NMS_IOU = 0.3
#: at most this many tiles per frame (``BlazeFaceDetector``'s ``tiles``)
MAX_TILES = 4
#: a tile's box this close (in box widths) to one of the tile's edges inside the frame may be a cut face
TILE_EDGE_MARGIN = 0.1
#: the fallback net's boxes are kept only when at least this fraction of the frame's shorter side: it is there for
#: the faces that fill the frame; its smaller boxes on a frame where the full-range net found nothing were false
#: tracks on the real clip (2.15 tracks a frame instead of 1.50, docs/BENCHMARKS.md "Issue 16, session 7")
FALLBACK_MIN_FACE = 0.5
#: a frame net's proposal (``propose_score``) is looked at again by the region net on a square this many of its box
#: widths from its centre each way (the loop's region around a track, ``search.TRACK_REGION_WIDTHS``), and is a face
#: when the region net finds a box there overlapping it by more than ``CONFIRM_IOU`` of ``CONFIRM_SIZES`` its width
CONFIRM_REACH = 1.0
CONFIRM_IOU = 0.3
CONFIRM_SIZES = (0.6, 1.7)
#: at most this many proposals are looked at again per frame net pass (best first): each costs a region net pass
#: (~5.5 ms on one core), and a busy picture proposes up to 6 a frame (the real clip, docs/BENCHMARKS.md)
MAX_CONFIRMS = 3

# --- BlazeFace box -> the Haar cascade's box (measured; docs/BENCHMARKS.md "Issue 16, session 7") -------------
#: Haar box centre minus BlazeFace box centre, in BlazeFace box widths (x, y), and the Haar box's width in
#: BlazeFace box widths.  Medians over 257 LFW faces of 32-400 px placed into 640x480 frames, found by the
#: full-range net (IQR 0.028, 0.039, 0.079; its boxes are square).  Measured with
#: ``python3 bench/bench_detectors.py --fit-blaze --n 50 --seed 5``.
BLAZE_TO_HAAR_DX = 0.0113
BLAZE_TO_HAAR_DY = -0.0630
BLAZE_TO_HAAR_WIDTH = 1.0731


def anchors(net: BlazeNet) -> np.ndarray:
    """float32 (N, 2) anchor centres (x, y) in 0..1 of the input, in the nets' output order (SSD anchors with
    fixed size 1: consecutive layers of the same stride share a grid, each adds one or two anchors a cell)."""
    out = []
    i = 0
    while i < len(net.strides):
        j, per_cell = i, 0
        while j < len(net.strides) and net.strides[j] == net.strides[i]:
            per_cell += 2 if net.interpolated else 1
            j += 1
        cells = int(math.ceil(net.input_px / net.strides[i]))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, net: BlazeNet, anchor_xy: np.ndarray,
           min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(boxes float32 (K, 4) as x0, y0, x1, y1 in 0..1 of the input, scores float32 (K,)) of the anchors scoring
    at least ``min_score`` (default the net's), from raw outputs (N, 16) and (N,) or (N, 1); not yet suppressed.
    Rows with a non-finite score or box are dropped."""
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(len(anchor_xy), -1)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(len(anchor_xy)), -SCORE_CLIP, SCORE_CLIP)
    scores = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)  # exp(100) overflows float32
    keep = scores >= (net.min_score if min_score is None else min_score)
    keep &= np.isfinite(raw_boxes[:, :4]).all(axis=1)  # a NaN score is never kept; a box must be finite too
    r, a = raw_boxes[keep, :4] / net.input_px, anchor_xy[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    half_w, half_h = r[:, 2] / 2, r[:, 3] / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1), scores[keep]


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_above: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: the best remaining box and every box overlapping it by more
    than ``iou_above`` become one box, their score-weighted mean, with the best's score.  Best first."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    out_b, out_s = [], []
    left = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not left[i]:
            continue
        group = left & (_iou(boxes[i], boxes) > iou_above)
        group[i] = True
        w = scores[group]
        out_b.append((boxes[group] * w[:, None]).sum(axis=0) / w.sum())
        out_s.append(scores[i])
        left &= ~group
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.asarray(out_b, np.float32), np.asarray(out_s, np.float32)


def letterbox(frame_bgr: np.ndarray, side: int) -> tuple[np.ndarray, float, float, float]:
    """(NCHW float32 (1, 3, side, side) RGB in -1..1, scale, pad_x, pad_y): the frame shrunk to fit a side x side
    square, centred, the rest black (-1).  Input px = frame px * scale + pad."""
    h, w = frame_bgr.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    small = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    px, py = (side - nw) // 2, (side - nh) // 2
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[py:py + nh, px:px + nw] = small
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / 127.5, (side, side), (127.5, 127.5, 127.5), swapRB=True)
    return blob, scale, float(px), float(py)


def to_bgr(frame) -> np.ndarray:
    """uint8 (H, W, 3) BGR from a uint8 (H, W, 3) BGR, (H, W, 4) BGRA, (H, W, 1) or (H, W) grey frame."""
    if not isinstance(frame, np.ndarray):
        raise DetectError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise DetectError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DetectError(f"frame must be a non-empty (H, W) or (H, W, C) image, got shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[2] != 3:
        raise DetectError(f"frame must be (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {frame.shape}")
    return frame


def load_net(name: str):
    """(BlazeNet, cv2.dnn.Net, anchors, output names) for a ``NETS`` name; DetectError naming what is wrong."""
    if name not in NETS:
        raise DetectError(f"unknown BlazeFace net {name!r}; expected one of {sorted(NETS)}")
    net = NETS[name]
    path = os.path.join(DETECTORS_DIR, net.file)
    if not os.path.isfile(path):
        raise DetectError(f"BlazeFace net file {path} is missing (package data of wearface.firmware)")
    try:
        dnn = cv2.dnn.readNetFromTFLite(path)
    except cv2.error as exc:
        raise DetectError(f"BlazeFace net {path} could not be loaded: {str(exc).strip().splitlines()[-1]}") from None
    dnn.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    dnn.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net, dnn, anchors(net), dnn.getUnconnectedOutLayersNames()


class BlazeFaceDetector:
    """BlazeFace with a board's settings.  ``detect(frame)`` -> boxes, best first, in the Haar cascade's box
    convention.  ``net``: the net for whole frames (``NETS``), or two joined by "+" (both run, their boxes merged:
    "full_range+short_range" finds small faces and faces that fill the frame); ``region_net``: the net for regions
    (a search around a known face; "" = the first frame net); ``fallback_net``: run on the whole frame when the
    frame nets find nothing (the short-range net finds the faces that fill the frame, which the full-range net
    misses; "" = none).  ``tiles``: the frame nets see a wide (or tall) frame as this many overlapping squares
    along its longer side (``tile_boxes``) instead of one letterboxed picture, so its faces reach the net larger
    (a 16:9 frame in two squares: 1.8x) at that many times the cost.  ``propose_score`` (0 = off): a frame net's
    box scoring at least this but under the net's threshold is a proposal, kept when the region net, run on the
    region around it (as around a new track), scores a box there at least ``confirm_score`` (``_confirm``): the
    faces a whole frame shows too small for the frame net to be sure of, at one region pass each.  Not thread-safe
    (an OpenCV Net is not); make one per thread."""

    def __init__(self, net: str = "full_range", region_net: str = "short_range", min_score: float | None = None,
                 min_size_px: float = 0.0, max_faces: int = 8, fallback_net: str = "", tiles: int = 1,
                 propose_score: float = 0.0, confirm_score: float = 0.6):
        names = str(net).split("+")
        extra = [n for n in (region_net, fallback_net) if n]
        loaded = {name: load_net(name) for name in dict.fromkeys(names + extra)}
        self.frame_nets = [loaded[name] for name in names]
        self.region_net = loaded[region_net] if region_net else self.frame_nets[0]
        self.fallback_net = loaded[fallback_net] if fallback_net else None
        if min_score is not None and not (0.0 < min_score < 1.0):
            raise DetectError(f"min_score must be in (0, 1), got {min_score!r}")
        self.min_score, self.min_size_px, self.max_faces = min_score, float(min_size_px), int(max_faces)
        if not (isinstance(tiles, int) and 1 <= tiles <= MAX_TILES):
            raise DetectError(f"tiles must be an integer in 1..{MAX_TILES}, got {tiles!r}")
        self.tiles = tiles
        if not (0.0 <= propose_score < 1.0):
            raise DetectError(f"propose_score must be in [0, 1) (0: off), got {propose_score!r}")
        if not (0.0 < confirm_score < 1.0):
            raise DetectError(f"confirm_score must be in (0, 1), got {confirm_score!r}")
        self.propose_score, self.confirm_score = float(propose_score), float(confirm_score)

    def detect(self, frame, downscale: float | None = None, min_size_px: float | None = None,
               max_size_px: float | None = None, pad: bool | None = None, region: bool = False,
               known=()) -> list[FaceBox]:
        """Faces in ``frame`` (uint8 BGR/BGRA/grey, any size) as ``FaceBox``es in frame px, best first.
        ``region``: the frame is a region around a known face (the region net runs).  ``min_size_px`` /
        ``max_size_px`` keep boxes of those widths only; ``downscale`` and ``pad`` are the cascade's and are
        accepted for the same call (the net's input is a fixed size; faces past the edges are found as they are).
        ``known``: boxes (x, y, w, h frame px, the cascade's convention) of faces the loop already tracks: a
        proposal on one of them is that face, kept without a second look (``_confirm``)."""
        bgr = to_bgr(frame)
        if region:
            found = [self._run(bgr, self.region_net)[:2]]
        else:
            found = [self._confirm(bgr, *self._run_tiled(bgr, net), known) for net in self.frame_nets]
        if not region and self.fallback_net is not None and not any(len(s) for _, s in found):
            boxes, scores, _ = self._run(bgr, self.fallback_net)  # nothing found: maybe one face that fills the frame
            large = (boxes[:, 2] - boxes[:, 0]) >= FALLBACK_MIN_FACE * min(bgr.shape[:2])
            found.append((boxes[large], scores[large]))
        boxes, scores = np.concatenate([b for b, _ in found]), np.concatenate([s for _, s in found])
        if len(found) > 1 or (self.tiles > 1 and not region):  # two nets' (tiles') boxes for one face become one
            boxes, scores = weighted_nms(boxes.astype(np.float32), scores)
        out = []
        low = max(self.min_size_px, float(min_size_px or 0.0))
        for (x0, y0, x1, y1), s in zip(boxes, scores):
            fw, fh = x1 - x0, y1 - y0
            if not (fw > 0 and fh > 0):
                continue
            box = haar_box(x0, y0, fw, fh, float(s))
            if box.w < low or (max_size_px and box.w > max_size_px):
                continue
            out.append(box)
        return out[: self.max_faces]

    def detect_region(self, crop, downscale: float, min_size_px: float | None, max_size_px: float | None,
                      at_edge: bool) -> list[FaceBox]:
        """``detect`` on a region of a frame (``FaceModel.detect_region``): around a known face (sizes given) the
        face fills much of the crop, so the region net runs; a region with no sizes (where the picture changed)
        is searched like a frame.  ``downscale`` and ``at_edge`` are the cascade's."""
        return self.detect(crop, min_size_px=min_size_px, max_size_px=max_size_px, region=min_size_px is not None)

    def _run_tiled(self, bgr: np.ndarray, loaded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_run`` (with proposals) on each of the frame's ``tiles`` (``tile_boxes``): boxes, scores and
        proposals in frame px, concatenated.  A box at a tile's inner edge (within ``TILE_EDGE_MARGIN`` of its
        width) may be a face the edge cuts: it is dropped where another tile sees that face whole (more than half
        the smaller box shared), since merging the two would shift the face's box off it."""
        if self.tiles == 1:
            return self._run(bgr, loaded, propose=True)
        height, width = bgr.shape[:2]
        all_b, all_s, all_cut, all_p = [], [], [], []
        for x0, y0, x1, y1 in tile_boxes(width, height, self.tiles):
            boxes, scores, proposals = self._run(bgr[y0:y1, x0:x1], loaded, propose=True)
            boxes = boxes + np.array([x0, y0, x0, y0], np.float32)
            m = TILE_EDGE_MARGIN * (boxes[:, 2] - boxes[:, 0])
            cut = ((x0 > 0) & (boxes[:, 0] < x0 + m)) | ((x1 < width) & (boxes[:, 2] > x1 - m)) | \
                ((y0 > 0) & (boxes[:, 1] < y0 + m)) | ((y1 < height) & (boxes[:, 3] > y1 - m))
            all_b.append(boxes)
            all_s.append(scores)
            all_cut.append(cut)
            all_p.append(proposals + np.array([x0, y0, x0, y0, 0], np.float64))
        boxes, scores, cut = np.concatenate(all_b), np.concatenate(all_s), np.concatenate(all_cut)
        whole = boxes[~cut]
        keep = ~cut
        for i in np.nonzero(cut)[0]:
            keep[i] = not (len(whole) and (_shared_of_smaller(boxes[i], whole) > 0.5).any())
        proposals = np.concatenate(all_p)
        if len(proposals):  # one face in two tiles' overlap is one proposal
            proposals = np.column_stack(weighted_nms(proposals[:, :4], proposals[:, 4]))
        return boxes[keep], scores[keep], proposals

    def _run(self, bgr: np.ndarray, loaded, min_score: float | None = None,
             propose: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One net on the whole of ``bgr``: (boxes (K, 4) x0, y0, x1, y1 in frame px, scores (K,), proposals (P, 5):
        x0, y0, x1, y1 frame px and score), each suppressed, best first.  ``min_score``: the score a box needs
        (default the detector's, else the net's); ``propose``: the boxes from ``propose_score`` up to that are the
        proposals (else none)."""
        net, dnn, anchor_xy, names = loaded
        blob, scale, px, py = letterbox(bgr, net.input_px)
        dnn.setInput(blob)
        raw_scores, raw_boxes = _outputs(dnn.forward(names))
        threshold = min_score or self.min_score or net.min_score
        lowest = self.propose_score if propose and 0.0 < self.propose_score < threshold else threshold
        boxes, scores = decode(raw_boxes, raw_scores, net, anchor_xy, lowest)
        sure = scores >= threshold
        kept_b, kept_s = weighted_nms(boxes[sure], scores[sure])  # the proposals never move a sure box
        maybe_b, maybe_s = weighted_nms(boxes[~sure], scores[~sure])
        # input 0..1 -> frame px, in float64 as before proposals (a box's last bits move the crop's pixel grid)
        to_frame = lambda b: (b * net.input_px - [px, py, px, py]) / scale  # noqa: E731
        return to_frame(kept_b), kept_s, np.column_stack([to_frame(maybe_b), maybe_s])

    def second_look(self, bgr: np.ndarray, box: np.ndarray, min_score: float) -> float:
        """The region net's best score (at least ``min_score``) for the face a frame net proposed at ``box`` (x0, y0,
        x1, y1 frame px): on the square ``CONFIRM_REACH`` box widths around it, a box of ``CONFIRM_SIZES`` its width
        overlapping it by IoU over ``CONFIRM_IOU``; 0.0 when there is none."""
        height, width = bgr.shape[:2]
        side = max(box[2] - box[0], box[3] - box[1])
        cx, cy, reach = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, CONFIRM_REACH * side
        x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
        x1, y1 = min(int(math.ceil(cx + reach)), width), min(int(math.ceil(cy + reach)), height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return 0.0
        found_b, found_s, _ = self._run(bgr[y0:y1, x0:x1], self.region_net, min_score=min_score)
        found_b = found_b + np.array([x0, y0, x0, y0], np.float32)
        sides = found_b[:, 2] - found_b[:, 0]
        ok = (_iou(box, found_b) > CONFIRM_IOU) & (sides >= CONFIRM_SIZES[0] * side) & (sides <= CONFIRM_SIZES[1] * side)
        return float(found_s[ok].max()) if ok.any() else 0.0

    def _confirm(self, bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray, proposals: np.ndarray,
                 known=()) -> tuple[np.ndarray, np.ndarray]:
        """``boxes`` / ``scores`` (frame px, sure) and the ``proposals`` (P, 5: x0, y0, x1, y1 frame px, score; best
        first) that are faces.  A proposal overlapping a box already kept is that box's face and is dropped; one on
        a ``known`` face (x, y, w, h, the cascade's convention; IoU over ``CONFIRM_IOU``) is kept as it is; any other
        is looked at again (``second_look``), at most ``MAX_CONFIRMS`` of them, and kept when the region net scores it
        at least ``confirm_score``.  A kept proposal keeps its own (frame net's) score, so every sure box stays ahead
        of it: a caller that takes the best box takes a face the frame net was sure of.  Best first."""
        if not len(proposals):
            return boxes, scores
        known_xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in known], np.float32).reshape(-1, 4)
        out_b, out_s = [boxes], [scores]
        looked = 0
        for box, own_score in zip(proposals[:, :4], proposals[:, 4]):
            kept = np.concatenate(out_b)
            if len(kept) and (_iou(box, kept) > NMS_IOU).any():
                continue
            as_haar = haar_box(box[0], box[1], box[2] - box[0], box[3] - box[1], 0.0)
            if len(known_xyxy) and (_iou(np.array([as_haar.x, as_haar.y, as_haar.x + as_haar.w, as_haar.y + as_haar.h]),
                                         known_xyxy) > CONFIRM_IOU).any():
                out_b.append(box[None])
                out_s.append(np.array([own_score], np.float32))
                continue
            if looked == MAX_CONFIRMS:
                continue
            looked += 1
            if self.second_look(bgr, box, self.confirm_score):
                out_b.append(box[None])
                out_s.append(np.array([own_score], np.float32))
        boxes, scores = np.concatenate(out_b), np.concatenate(out_s).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]


def tile_boxes(width: int, height: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """``tiles`` windows (x0, y0, x1, y1) frame px covering a ``width`` x ``height`` frame, spread evenly along its
    longer side from one end to the other: squares of the shorter side, overlapping where the frame is less than
    ``tiles`` squares long (longer than that: each ``ceil(longer / tiles)`` long).  One tile, or a square frame:
    the whole frame."""
    short, long_ = min(width, height), max(width, height)
    if tiles == 1 or long_ == short:
        return [(0, 0, width, height)]
    side = max(short, -(-long_ // tiles))
    starts = [round(i * (long_ - side) / (tiles - 1)) for i in range(tiles)]
    if width >= height:
        return [(s, 0, s + side, height) for s in starts]
    return [(0, s, width, s + side) for s in starts]


def _overlap(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection areas, ``box``'s area, each of ``others``' areas) of ``box`` (x0, y0, x1, y1) with each of
    ``others`` (K, 4)."""
    iw = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
    ih = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0)
    area = lambda b: np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)  # noqa: E731
    return iw * ih, area(box), area(others)


def _shared_of_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The area ``box`` (x0, y0, x1, y1) shares with each of ``others`` (K, 4), over the smaller of the two."""
    inter, own, their = _overlap(box, others)
    return inter / np.maximum(np.minimum(own, their), 1e-12)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of ``box`` (x0, y0, x1, y1) with each of ``others`` (K, 4)."""
    inter, own, their = _overlap(box, others)
    return inter / np.maximum(own + their - inter, 1e-12)


def haar_box(x: float, y: float, w: float, h: float, score: float) -> FaceBox:
    """A BlazeFace box (x, y, w, h frame px) as the box the Haar cascade would draw for that face (square)."""
    cx, cy = x + w / 2 + BLAZE_TO_HAAR_DX * w, y + h / 2 + BLAZE_TO_HAAR_DY * w
    side = BLAZE_TO_HAAR_WIDTH * w
    return FaceBox(float(cx - side / 2), float(cy - side / 2), float(side), float(side), score)


def _outputs(outs) -> tuple[np.ndarray, np.ndarray]:
    """(raw scores (N,), raw boxes (N, 16)) from the net's two outputs, told apart by their last dimension."""
    first, second = (np.asarray(o, np.float32) for o in outs)
    if first.shape[-1] == 1:
        return first.reshape(-1), second.reshape(first.size, -1)
    return second.reshape(-1), first.reshape(second.size, -1)
