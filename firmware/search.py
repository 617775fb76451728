"""Where the detector looks in this frame: the whole frame, some regions, or nowhere.

One job: the detection schedule of the loop (``pipeline.py``).  The Haar search of a whole 640x480 frame costs
17-49 ms of CPU, the follower (``follow.py``) ~1 ms per face, so the whole frame is searched only once every
``detector.every_frames`` frames; in the frames between, only regions are searched:

* around each **unconfirmed** track (fewer than ``tracker.appear_after_hits`` detections): the confirming
  detection happens in the next frame, as it would with a search of every frame, so a new face appears
  within ``every_frames`` frames (+ ``appear_after_hits`` - 1);
* around each **doubtful** track (its follower said "no face here": ``follow.py``);
* where the picture **changed** since the previous frame outside the tracked faces (``roi_on_change``): a
  thumbnail (1/8 of the frame a side) of mean grey per 8x8 cell, cells that moved by more than
  ``change_grey_levels``; their bounding box (grown by half the smallest face) is searched, unless it covers
  more than ``change_max_fraction`` of the frame (a pan, the light: the next full search sees it).

A region around a known face searches only sizes near its own (0.6-1.7x), which skips most of the pyramid:
a 2x2-face region costs a small fraction of a full search.

A **still** frame (``detector.still_grey_levels`` > 0: no thumbnail cell moved by more than that since the last
frame the loop worked on) is not searched at all, nor followed: the loop keeps its tracks as they are
(``SearchPlanner.still``).  Compared with the last frame worked on, not the previous one, so a slow drift adds up
and is worked on.  numpy + OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

#: thumbnail cell side, frame px
CELL_PX = 8
#: a region around a track reaches this many box widths from its centre, and searches boxes of these sizes
TRACK_REGION_WIDTHS = 1.0
TRACK_SIZE_RANGE = (0.6, 1.7)
#: grow the tracked boxes by this fraction of their width before masking them out of the change map (their own
#: movement, hair and shoulders, is the follower's business)
TRACK_MASK_GROW = 0.35


@dataclass(frozen=True)
class Region:
    """A part of the frame to search: ``x0, y0, x1, y1`` frame px (end exclusive), box sides ``min_px``..``max_px``
    (None: the board's), and ``why`` ("track" or "change")."""

    x0: int
    y0: int
    x1: int
    y1: int
    min_px: Optional[float] = None
    max_px: Optional[float] = None
    why: str = "track"

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    def contains(self, box) -> bool:
        """Whether the centre of ``box`` (x, y, w, h) lies inside."""
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        return self.x0 <= cx < self.x1 and self.y0 <= cy < self.y1


@dataclass
class SearchPlan:
    """``full``: search the whole frame; else ``regions`` (maybe none: no search this frame).  ``cut``: the picture
    changed as a whole since the previous frame (``detector.cut_fraction``): a new shot, or the wearer turned; the
    faces now in view are not the tracks' (``full`` is then True)."""

    full: bool
    regions: list
    cut: bool = False

    @property
    def searches(self) -> bool:
        return self.full or bool(self.regions)

    def covers(self, box) -> bool:
        return self.full or any(r.contains(box) for r in self.regions)


def _clip(x0, y0, x1, y1, width, height) -> tuple[int, int, int, int]:
    return max(int(x0), 0), max(int(y0), 0), min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)


def track_region(box, width: int, height: int) -> Region:
    """The region searched around a track's box (x, y, w, h): the box's own sizes, nearby."""
    cx, cy, side = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0, max(box[2], box[3])
    reach = TRACK_REGION_WIDTHS * side
    return Region(*_clip(cx - reach, cy - reach, cx + reach, cy + reach, width, height),
                  min_px=TRACK_SIZE_RANGE[0] * side, max_px=TRACK_SIZE_RANGE[1] * side, why="track")


class SearchPlanner:
    """Decides each frame's search from the board's ``[detector]`` settings (``board.DetectorConfig``)."""

    def __init__(self, config):
        self.config = config
        self.last_full = None  # frame index of the last full search
        self._thumb = None  # the thumbnail of the last frame planned, float32 (H/8, W/8)

    def thumbnail(self, frame_bgr: np.ndarray) -> Optional[np.ndarray]:
        """The frame's thumbnail (float32 (H/8, W/8) mean grey per 8x8 cell) when a setting compares frames
        (still frames, or region searches on change between full searches), else None.  The loop computes it
        once a frame and hands it to ``still`` and ``plan``."""
        cfg = self.config
        if (cfg.roi_on_change and cfg.every_frames > 1) or cfg.still_grey_levels or cfg.cut_fraction:
            return self._thumbnail(frame_bgr)
        return None

    def still(self, frame_bgr: np.ndarray, thumb: Optional[np.ndarray] = None) -> bool:
        """Whether ``frame_bgr`` shows what the last planned frame showed (``detector.still_grey_levels``), so
        the loop may skip it.  Always False when the setting is 0 or before the first plan.  ``thumb``: the
        frame's ``thumbnail`` when already computed."""
        levels = self.config.still_grey_levels
        if not levels:
            return False
        thumb = self._thumbnail(frame_bgr) if thumb is None else thumb
        previous = self._thumb
        return previous is not None and previous.shape == thumb.shape and \
            float(np.abs(thumb - previous).max()) <= levels

    def plan(self, frame_bgr: np.ndarray, index: int, tracks: Sequence,
             thumb: Optional[np.ndarray] = None) -> SearchPlan:
        """The search of frame ``index``; ``tracks``: the tracker's live tracks (``tracker.Track``); ``thumb``: the
        frame's ``thumbnail`` when already computed."""
        cfg = self.config
        height, width = frame_bgr.shape[:2]
        thumb = self.thumbnail(frame_bgr) if thumb is None else thumb
        previous, self._thumb = self._thumb, thumb
        comparable = thumb is not None and previous is not None and previous.shape == thumb.shape
        if cfg.cut_fraction and comparable and \
                float((np.abs(thumb - previous) > cfg.change_grey_levels).mean()) > cfg.cut_fraction:
            return SearchPlan(True, [], cut=True)  # off the schedule: the schedule's own slots stay where they were
        if self.last_full is None or index - self.last_full >= cfg.every_frames:
            # on the schedule's own slot: a full search put off by a still frame does not shift the ones after it
            self.last_full = index if self.last_full is None else index - (index - self.last_full) % cfg.every_frames
            return SearchPlan(True, [])
        regions = [track_region(tr.box, width, height) for tr in tracks if tr.needs_search]
        if cfg.roi_on_change and comparable:
            changed = self._changed_region(thumb, previous, tracks, width, height)
            if changed is not None:
                regions.append(changed)
        return SearchPlan(False, regions)

    @staticmethod
    def _thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        small = cv2.resize(frame_bgr, (max(w // CELL_PX, 1), max(h // CELL_PX, 1)), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)

    def _changed_region(self, thumb, previous, tracks, width: int, height: int) -> Optional[Region]:
        cfg = self.config
        changed = np.abs(thumb - previous) > cfg.change_grey_levels
        for tr in tracks:  # the tracked faces' own motion is not news
            x, y, w, h = tr.box
            g = TRACK_MASK_GROW * w
            x0, y0 = max(int((x - g) // CELL_PX), 0), max(int((y - g) // CELL_PX), 0)
            x1, y1 = int((x + w + g) // CELL_PX) + 1, int((y + h + g) // CELL_PX) + 1
            changed[y0:y1, x0:x1] = False
        ys, xs = np.nonzero(changed)
        if len(xs) == 0:
            return None
        grow = 0.5 * self._min_face_px()
        x0, y0, x1, y1 = _clip(xs.min() * CELL_PX - grow, ys.min() * CELL_PX - grow,
                               (xs.max() + 1) * CELL_PX + grow, (ys.max() + 1) * CELL_PX + grow, width, height)
        if (x1 - x0) * (y1 - y0) > cfg.change_max_fraction * width * height:
            return None  # a pan or a change of light: the next full search
        if min(x1 - x0, y1 - y0) < self._min_face_px():
            return None  # no face of the board's smallest size fits
        return Region(x0, y0, x1, y1, why="change")

    def _min_face_px(self) -> float:
        return float(self.config.min_size_px)
