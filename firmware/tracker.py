"""Tracking faces across frames, so that each person is recognised once, not once per frame.

One job: match this frame's face boxes to the tracks of earlier frames (greedy by IoU, then by centre
distance for fast movers), keep each track's embeddings, and say which tracks need a new embedding.
The seed's "video stream" point: a track's identity is decided from the mean of its L2-normalised
embeddings, and a track is re-embedded only while it has fewer than ``min_embeddings`` samples, then
once every ``reembed_every_frames`` frames; the pipeline embeds the neediest tracks first and stops when
the frame budget is spent.

Between detections (``detector.every_frames`` > 1) the loop moves tracks with the follower (``follow.py``):
``followed`` records such a frame, ``doubt`` a follower's "no face here" (the track's region is searched next
frame), ``end`` a face that left the frame.  ``update`` takes the search that produced the boxes: a track the
search covered but did not find counts a miss, and ends once nobody (detector or follower) has seen it for
``max_missed_frames`` frames, or the detector has not found it for ``max_undetected_frames`` (the follower alone
may hold a confirmed face through the detector's gaps: profiles, blur, dim light).  Without following that is
``max_missed_frames`` missed frames in a row, as before.

Boxes are (x, y, w, h) floats in frame pixels.  numpy only.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

#: a detection whose centre is within this many track widths of a track's centre may continue it when
#: no box overlaps enough (a fast head turn moves the box more than IoU tolerates)
CENTRE_MATCH_WIDTHS = 0.5


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One person in view.  ``embeddings``: the latest (at most ``max_embeddings``) float32 (D,) vectors."""

    id: int
    box: tuple
    first_frame: int
    last_frame: int
    first_t: float
    last_t: float
    hits: int = 1
    missed: int = 0
    announced: bool = False
    last_embed_frame: int = -1
    embeddings: deque = field(default_factory=deque)
    #: the last decision published: (name or None) and the gallery Match
    decision: Optional[object] = None
    decided: bool = False
    #: the last frame a detection found this track (``hits`` counts those frames)
    last_detect_frame: int = -1
    #: frames whose box came from the follower, not the detector
    follows: int = 0
    #: the follower's window (2, 3) and reference signature (``follow.py``), set at each detection; None: not followed
    window: Optional[np.ndarray] = None
    reference: Optional[np.ndarray] = None
    #: the follower said "no face here" and no detection has answered yet
    doubtful: bool = False
    #: hits needed before the track is announced (set by the tracker: ``appear_after_hits``)
    confirm_hits: int = 1

    def __post_init__(self):
        if self.last_detect_frame < 0:
            self.last_detect_frame = self.first_frame

    @property
    def needs_search(self) -> bool:
        """Whether the detector should look around this track in the next frame: to confirm a new track, or to
        answer the follower's doubt."""
        return self.doubtful or self.hits < self.confirm_hits

    @property
    def frames_seen(self) -> int:
        """Frames with this face in them: found by the detector or followed."""
        return self.hits + self.follows

    def add_embedding(self, vector: np.ndarray, frame_index: int, max_embeddings: int) -> None:
        self.embeddings.append(np.asarray(vector, np.float32))
        while len(self.embeddings) > max_embeddings:
            self.embeddings.popleft()
        self.last_embed_frame = frame_index

    def mean_embedding(self) -> Optional[np.ndarray]:
        """Mean of the L2-normalised embeddings, L2-normalised again; float32 (D,), or None."""
        if not self.embeddings:
            return None
        stack = np.stack(self.embeddings)
        stack = stack / np.maximum(np.linalg.norm(stack, axis=1, keepdims=True), 1e-12)
        mean = stack.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


@dataclass
class TrackUpdate:
    """What one frame did: ``seen`` (track, box) pairs for every box (new tracks included), ``new`` tracks,
    ``appeared`` tracks that just reached ``appear_after_hits``, ``lost`` tracks gone for good."""

    seen: list
    new: list
    appeared: list
    lost: list


class Tracker:
    """``config``: ``board.TrackerConfig``.  ``max_undetected_frames``: how long a confirmed, followed track may go
    without a detection (``follow.max_undetected_frames``; 0: ``max_missed_frames``, as without following)."""

    def __init__(self, config, max_undetected_frames: int = 0):
        self.config = config
        self.max_undetected_frames = max_undetected_frames
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: list, frame_index: int, t: float, covers: Optional[Callable] = None) -> TrackUpdate:
        """Assign ``boxes`` (list of (x, y, w, h)) of frame ``frame_index`` taken at ``t`` (s) to tracks.

        ``covers(box) -> bool``: whether this frame's search looked where a track's box is (default: the whole
        frame was searched).  Only a covered track that was not found counts a miss."""
        cfg = self.config
        tracks = list(self.tracks.values())
        pairs = sorted(((iou(tr.box, bx), i, j) for i, tr in enumerate(tracks) for j, bx in enumerate(boxes)),
                       reverse=True)
        used_t, used_b, matched = set(), set(), []
        for score, i, j in pairs:
            if score < cfg.iou_min:
                break
            if i not in used_t and j not in used_b:
                used_t.add(i), used_b.add(j), matched.append((i, j))
        for j, bx in enumerate(boxes):  # fallback: nearest centre among the unmatched tracks
            if j in used_b:
                continue
            cx, cy = bx[0] + bx[2] / 2, bx[1] + bx[3] / 2
            best, best_d = None, None
            for i, tr in enumerate(tracks):
                if i in used_t:
                    continue
                d = np.hypot(tr.box[0] + tr.box[2] / 2 - cx, tr.box[1] + tr.box[3] / 2 - cy)
                if d <= CENTRE_MATCH_WIDTHS * tr.box[2] and (best_d is None or d < best_d):
                    best, best_d = i, d
            if best is not None:
                used_t.add(best), used_b.add(j), matched.append((best, j))

        seen, new, appeared, lost = [], [], [], []
        for i, j in matched:
            tr = tracks[i]
            tr.box, tr.last_frame, tr.last_t, tr.missed = tuple(boxes[j]), frame_index, t, 0
            tr.hits += 1
            tr.last_detect_frame, tr.doubtful = frame_index, False
            seen.append((tr, boxes[j]))
        for j, bx in enumerate(boxes):
            if j not in used_b:
                tr = Track(self._next_id, tuple(bx), frame_index, frame_index, t, t,
                           confirm_hits=cfg.appear_after_hits)
                self._next_id += 1
                self.tracks[tr.id] = tr
                new.append(tr)
                seen.append((tr, bx))
        for tr, _ in seen:
            if not tr.announced and tr.hits >= cfg.appear_after_hits:
                tr.announced = True
                appeared.append(tr)
        for i, tr in enumerate(tracks):
            if i not in used_t and (covers is None or covers(tr.box)):
                tr.missed += 1
                # gone when nobody (detector or follower) has seen it for max_missed_frames, or the detector has
                # not for longer than the follower may hold a confirmed track alone
                undetected_max = self.max_undetected_frames if tr.window is not None and not tr.needs_search \
                    else cfg.max_missed_frames
                if frame_index - tr.last_frame > cfg.max_missed_frames or \
                        frame_index - tr.last_detect_frame > max(undetected_max, cfg.max_missed_frames):
                    lost.append(self.tracks.pop(tr.id))
        return TrackUpdate(seen, new, appeared, lost)

    def followed(self, track: Track, box, frame_index: int, t: float) -> None:
        """The follower found ``track`` at ``box`` (x, y, w, h) in frame ``frame_index`` taken at ``t`` (s)."""
        track.box, track.last_frame, track.last_t, track.doubtful = tuple(box), frame_index, t, False
        track.follows += 1

    def settled(self, last_worked: int, frame_index: int) -> bool:
        """Whether nothing is pending on any track after frame ``last_worked``, so that a still frame
        ``frame_index`` (the same picture) can be skipped: every track was seen there, is announced, not in doubt,
        and needs no embedding (a track still gathering its first samples takes every frame, or its name would wait
        for the picture to change)."""
        return all(tr.last_frame == last_worked and tr.announced and not tr.needs_search
                   and self.embedding_need(tr, frame_index) is None for tr in self.tracks.values())

    def hold(self, frame_index: int, t: float, last_worked: int) -> None:
        """A still frame (``settled``): every track is where frame ``last_worked`` saw it, found by whatever found
        it there."""
        for tr in self.tracks.values():
            tr.last_frame, tr.last_t = frame_index, t
            if tr.last_detect_frame == last_worked:
                tr.last_detect_frame = frame_index

    def doubt(self, track: Track) -> None:
        """The follower found no face where ``track`` was: keep its box, search there next frame."""
        track.doubtful = True

    def end(self, track: Track) -> Track:
        """``track`` is gone for good (its face left the frame)."""
        return self.tracks.pop(track.id)

    def embedding_need(self, track: Track, frame_index: int) -> Optional[tuple]:
        """A sort key (smaller = more urgent) if ``track`` should be embedded this frame, else None."""
        cfg = self.config
        n = len(track.embeddings)
        if n < cfg.min_embeddings:
            return (0, n, track.first_frame)
        if cfg.reembed_every_frames and frame_index - track.last_embed_frame >= cfg.reembed_every_frames:
            return (1, track.last_embed_frame, track.first_frame)
        return None

    def drain(self) -> list:
        """Every remaining track, as lost (the loop stops, or a cut: ``search.SearchPlan.cut``)."""
        lost = list(self.tracks.values())
        self.tracks.clear()
        return lost
