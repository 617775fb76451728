"""The recognition loop: frame -> search (detect) -> track -> follow -> align -> embed -> match -> events.

One job: turn camera frames into events (``events.py``): a person appeared, was recognised (name,
distance, margin to the next name) or is unknown, left; per-stage latency and fps every
``stats.interval_s``; debug embeddings only when the host asked.  The tracker decides which faces need
an embedding; the neediest are embedded first, and more only while the frame's time budget
(``frame_budget_ms``) lasts — or exactly ``tracker.max_embeds_per_frame`` per frame when that is set,
which makes the events independent of the machine's speed (emulated boards, reproducible tests).

Detection is most of a frame's cost, so (``[detector] every_frames`` > 1, ``[follow] enabled``) the whole frame
is searched only every N frames and, between, each track is moved by the alignment net (``follow.py``) and
only regions are searched (``search.py``: new and doubtful tracks, changes outside the tracks).  A still frame
(``[detector] still_grey_levels``: the same picture as the last frame worked on, e.g. the repeated frames of video
converted from 24 fps) is skipped: the tracks keep their boxes and names.

A frame that raises is skipped with a ``loop.error`` event; the loop never dies of one frame.
Must not import torch.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import events as ev
from . import follow as fol
from .search import SearchPlanner
from .tracker import Tracker, iou

STAGES = ("detect", "follow", "align", "embed", "match", "frame")
#: latency samples kept per stage for the stats (the last this many calls)
LATENCY_WINDOW = 256
#: at most one loop.error event per this many seconds (a broken camera must not flood the line)
ERROR_EVENT_INTERVAL_S = 1.0


class StageTimes:
    """Recent latencies per stage in ms, and how often each stage ran."""

    def __init__(self):
        self.samples = {s: deque(maxlen=LATENCY_WINDOW) for s in STAGES}
        self.calls = {s: 0 for s in STAGES}
        #: ms spent in each stage since the start (the benchmark divides by frames)
        self.totals = {s: 0.0 for s in STAGES}

    def add(self, stage: str, ms: float) -> None:
        self.samples[stage].append(ms)
        self.calls[stage] += 1
        self.totals[stage] += ms

    def summary(self) -> tuple[dict, dict]:
        mean, p95 = {}, {}
        for s, values in self.samples.items():
            if values:
                arr = np.fromiter(values, np.float64)
                mean[s], p95[s] = round(float(arr.mean()), 3), round(float(np.percentile(arr, 95)), 3)
            else:
                mean[s] = p95[s] = None
        return mean, p95


@dataclass
class CaptureRequest:
    """Enrolment from the camera: the largest face of each of the next frames, ``n_frames`` of them."""

    n_frames: int
    embeddings: list = field(default_factory=list)
    crops: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def _box_json(box) -> list:
    return [round(float(v), 1) for v in box[:4]]


class Pipeline:
    """The loop over one frame source with one face model and one gallery.

    ``model``: detect(frame) -> boxes, align(frame, box) -> (crop, window), embed(crop) -> vector
    (``facemodel.FaceModel``).  ``model_lock`` serialises model use with enrolment on other threads.
    ``on_frame(healthy_frames)`` is called after every good frame (the app confirms a trial boot there).
    """

    def __init__(self, board, model, gallery, bus: ev.EventBus, source, model_lock: threading.Lock | None = None,
                 on_frame: Callable[[int], None] | None = None):
        self.board = board
        self.model = model
        self.gallery = gallery
        self.bus = bus
        self.source = source
        self.model_lock = model_lock or threading.Lock()
        #: the clock of the stage latencies (s); the benchmark swaps in time.thread_time (CPU time)
        self.clock = time.perf_counter
        self.on_frame = on_frame or (lambda n: None)
        self.tracker = Tracker(board.tracker, board.follow.max_undetected_frames if board.follow.enabled else 0)
        self.planner = SearchPlanner(board.detector)
        self.following = board.follow.enabled
        #: track-frames whose box came from the detector / the follower; follower doubts; searches by kind;
        #: frames from a track's first detection to its person.appeared (summed over appeared tracks)
        self.counts = {"tracks_detected": 0, "tracks_followed": 0, "follow_doubts": 0, "searches_full": 0,
                       "searches_region": 0, "appeared": 0, "appear_latency_frames": 0, "still_frames": 0,
                       "cuts": 0}
        self.times = StageTimes()
        self.debug_embeddings = False
        self.debug_explain = False  # explain records (``debug.explain``): crops, views, distances; same session rules
        self.frame_index = 0
        self._last_worked = -1  # the last frame searched and followed (not still)
        self.healthy_frames = 0
        self.failed_frames = 0
        self.embeds = 0
        self.started_t = time.monotonic()
        self._per_face_ms = 0.0
        self._window_t = time.monotonic()
        self._window_frames = 0
        self._window_embeds = 0
        self._last_error_t = 0.0
        self._rematch = False
        self._capture: Optional[CaptureRequest] = None
        self._capture_lock = threading.Lock()
        self.last_stats: dict = {}

    # ------------------------------------------------------------------------------ one frame

    def step(self, frame: np.ndarray) -> None:
        """Process one BGR frame (uint8 (H, W, 3)) and publish what it showed."""
        t_frame = self.clock()
        index = self.frame_index
        self.frame_index += 1
        now = time.time()
        with self.model_lock:
            # skipped only when nothing waits on a new picture: an enrolment from the camera, a track to confirm,
            # doubt or embed (its name must not wait for the scene to move)
            thumb = self.planner.thumbnail(frame)
            still = self._capture is None and self.planner.still(frame, thumb) and \
                self.tracker.settled(self._last_worked, index)
            if still:  # the picture the tracks were placed on: nothing to search, follow or embed
                self.counts["still_frames"] += 1
                self.tracker.hold(index, now, self._last_worked)
            else:
                self._last_worked = index
                plan = self.planner.plan(frame, index, list(self.tracker.tracks.values()), thumb)
                boxes = self._search(frame, plan)
                ended = self.tracker.drain() if plan.cut else []  # no name carries over a cut to someone else
                self.counts["cuts"] += plan.cut
                update = self.tracker.update(boxes, index, now, None if plan.full else plan.covers)
                update.lost[:0] = ended
                self.counts["tracks_detected"] += len(update.seen)
                if self.following:
                    self._follow_tracks(frame, update, index, now)
            if self._rematch:
                self._rematch = False
                for tr in list(self.tracker.tracks.values()):
                    if tr.embeddings:
                        self._decide(tr, self.gallery.match(tr.mean_embedding()), index)
            if not still:
                for tr in update.appeared:
                    self.counts["appeared"] += 1
                    self.counts["appear_latency_frames"] += index - tr.first_frame
                    self.bus.publish(ev.PERSON_APPEARED, track=tr.id, box=_box_json(tr.box), frame=index)
                    self._publish_decision(tr, index)
                self._serve_capture(frame, [box for _, box in update.seen])
                self._embed_tracks(frame, update, index, t_frame)
                for tr in update.lost:
                    self._publish_left(tr)
        self.times.add("frame", (self.clock() - t_frame) * 1e3)
        self._window_frames += 1
        self.healthy_frames += 1
        self.on_frame(self.healthy_frames)
        self._maybe_stats()

    def _search(self, frame, plan) -> list:
        """Run this frame's search (``search.SearchPlan``); boxes (x, y, w, h) in frame px, overlaps merged."""
        if not plan.searches:
            return []
        t0 = self.clock()
        if plan.full:
            # the faces already tracked (and not in doubt): a detector unsure of a face there need not look twice.
            # Not after a cut: whoever stands there now is not the track's person
            known = [] if plan.cut else [tr.box for tr in self.tracker.tracks.values() if not tr.needs_search]
            found = self.model.detect(frame, known=known)
            self.counts["searches_full"] += 1
        else:
            found = []
            for region in plan.regions:
                found += self.model.detect_region(frame, region.bounds, region.min_px, region.max_px)
                self.counts["searches_region"] += 1
        self.times.add("detect", (self.clock() - t0) * 1e3)
        boxes = []
        for b in found:  # overlapping regions may find one face twice
            box = (b.x, b.y, b.w, b.h)
            if all(iou(box, other) < 0.5 for other in boxes):
                boxes.append(box)
        return boxes

    def _follow_tracks(self, frame, update, index: int, now: float) -> None:
        """Anchor the follower on every detected track; move every other live track with it."""
        detected = {tr.id for tr, _ in update.seen}
        lost = {tr.id for tr in update.lost}
        cfg = self.board.follow
        for tr, box in update.seen:
            t0 = self.clock()
            tr.window, tr.reference = fol.anchor(self.model, frame, box)
            self.times.add("follow", (self.clock() - t0) * 1e3)
        for tr in list(self.tracker.tracks.values()):
            if tr.id in detected or tr.id in lost or tr.window is None:
                continue
            t0 = self.clock()
            result = fol.follow(self.model, frame, tr.window, tr.reference, cfg)
            self.times.add("follow", (self.clock() - t0) * 1e3)
            if result.verdict == fol.OK:
                tr.window = result.window
                self.tracker.followed(tr, result.box, index, now)
                update.seen.append((tr, result.box))
                self.counts["tracks_followed"] += 1
            elif result.verdict == fol.LEFT:
                update.lost.append(self.tracker.end(tr))
            else:
                self.tracker.doubt(tr)
                self.counts["follow_doubts"] += 1

    def _embed_tracks(self, frame, update, index: int, t_frame: float) -> None:
        cfg = self.board.tracker
        needy = sorted((key, tr.id, tr, box) for tr, box in update.seen
                       if (key := self.tracker.embedding_need(tr, index)) is not None)
        budget_ms = self.board.frame_budget_ms
        for n, (_, _, tr, box) in enumerate(needy):
            if cfg.max_embeds_per_frame:
                if n >= cfg.max_embeds_per_frame:
                    break
            elif n > 0 and (self.clock() - t_frame) * 1e3 + self._per_face_ms > budget_ms:
                break  # the rest wait for a later frame; the neediest one always goes
            t_face = self.clock()
            self._embed_one(frame, tr, box, index)
            face_ms = (self.clock() - t_face) * 1e3
            self._per_face_ms = face_ms if not self._per_face_ms else 0.8 * self._per_face_ms + 0.2 * face_ms

    def _embed_one(self, frame, track, box, index: int) -> None:
        t0 = self.clock()
        details = {} if self.debug_explain else None
        if track.window is not None and track.last_detect_frame != index:
            crop, _ = self.model.align_window(frame, track.window, details)  # followed: start from its window
        else:
            crop, _ = self.model.align(frame, box, details)
        t1 = self.clock()
        vector = self.model.embed(crop)
        t2 = self.clock()
        track.add_embedding(vector, index, self.board.tracker.max_embeddings)
        match = self.gallery.match(track.mean_embedding())
        t3 = self.clock()
        self.times.add("align", (t1 - t0) * 1e3)
        self.times.add("embed", (t2 - t1) * 1e3)
        self.times.add("match", (t3 - t2) * 1e3)
        self.embeds += 1
        self._window_embeds += 1
        self._decide(track, match, index)
        if self.debug_embeddings:
            self.bus.publish(ev.DEBUG_EMBEDDING, track=track.id, embedding=np.asarray(vector, np.float32),
                             name=match.name, distance=match.distance, score=match.score, frame=index,
                             n_embeddings=len(track.embeddings))
        if details is not None:
            self.bus.publish(ev.DEBUG_EXPLAIN, track=track.id, frame=index, box=_box_json(box), crop=crop,
                             view=details["view"], alignment=details["correction"], name=match.name,
                             distance=match.distance, score=match.score,
                             # the θ the decision met (None only with an empty gallery: the model's θ)
                             threshold=self.gallery.threshold_for(None) if match.threshold is None else match.threshold,
                             distance_threshold=self.gallery.distance_threshold(track.mean_embedding(), match.nearest),
                             nearest=self.gallery.nearest(track.mean_embedding(), 3), n_embeddings=len(track.embeddings))

    def _decide(self, track, match, index: int) -> None:
        """Keep ``match`` as the track's decision; publish it when the name changed (or it is the first)."""
        changed = track.decision is None or track.decision.name != match.name
        track.decision = match
        if changed:
            track.decided = False
        if not track.decided:  # a new name, or the first one now resting on enough samples
            self._publish_decision(track, index)

    def rematch(self) -> None:
        """The gallery changed: match every track again at the next frame (names may appear or go)."""
        self._rematch = True

    def _publish_decision(self, track, index: int, final: bool = False) -> None:
        """Publish the track's decision once it rests on ``min_embeddings`` samples (or the track ends)."""
        m = track.decision
        if m is None or not track.announced or track.decided:
            return
        if len(track.embeddings) < self.board.tracker.min_embeddings and not final:
            return
        track.decided = True
        # with a cohort (metric "l2_cohort") θ bounds the score, not the distance: say what was compared
        score = {"score": round(m.score, 4)} if self.gallery.cohort is not None and m.score is not None else {}
        if m.name is not None:
            self.bus.publish(ev.PERSON_RECOGNISED, track=track.id, name=m.name, distance=round(m.distance, 4),
                             margin=None if m.margin is None else round(m.margin, 4), next_name=m.next_name,
                             box=_box_json(track.box), frame=index, n_embeddings=len(track.embeddings), **score)
        else:
            self.bus.publish(ev.PERSON_UNKNOWN, track=track.id,
                             distance=None if m.distance is None else round(m.distance, 4), nearest=m.nearest,
                             box=_box_json(track.box), frame=index, n_embeddings=len(track.embeddings), **score)

    def _publish_left(self, track) -> None:
        if not track.announced:
            return
        self._publish_decision(track, track.last_frame, final=True)
        name = track.decision.name if track.decision is not None else None
        self.bus.publish(ev.PERSON_LEFT, track=track.id, name=name, frames_seen=track.frames_seen,
                         duration_s=round(track.last_t - track.first_t, 3), frame=track.last_frame)

    # ------------------------------------------------------------------------------ enrolment from frames

    def capture(self, n_frames: int, timeout_s: float) -> CaptureRequest:
        """Block until the largest face of ``n_frames`` frames has been embedded (or ``timeout_s``)."""
        request = CaptureRequest(n_frames)
        with self._capture_lock:
            self._capture = request
        request.done.wait(timeout_s)
        with self._capture_lock:
            if self._capture is request:
                self._capture = None
        return request

    def _serve_capture(self, frame, boxes) -> None:
        with self._capture_lock:
            request = self._capture
        if request is None or request.done.is_set() or not boxes:
            return
        box = max(boxes, key=lambda b: b[2] * b[3])
        crop, _ = self.model.align(frame, box)
        request.embeddings.append(self.model.embed(crop))
        request.crops.append(crop)
        if len(request.embeddings) >= request.n_frames:
            request.done.set()

    # ------------------------------------------------------------------------------ stats and the loop

    def stats(self) -> dict:
        mean, p95 = self.times.summary()
        counters = self.source.counters() if self.source is not None else {}
        c = self.counts
        return {
            "fps": self.last_stats.get("fps"), "frames": self.frame_index, "healthy_frames": self.healthy_frames,
            "failed_frames": self.failed_frames, "dropped_frames": counters.get("dropped_frames", 0),
            "corrupt_frames": counters.get("corrupt_frames", 0), "latency_ms": mean, "p95_ms": p95,
            "tracks": len(self.tracker.tracks), "embeds": self.embeds,
            "embeds_per_frame": round(self.embeds / self.frame_index, 3) if self.frame_index else None,
            "frame_budget_ms": self.board.frame_budget_ms,
            # following (docs/FIRMWARE.md "The loop"): track-frames from the detector vs the follower, the
            # follower's doubts, searches of the whole frame vs regions; a new face appears within
            # detect_every_frames (+ appear_after_hits - 1) frames; appear_latency_frames: the mean, from a
            # track's first detection to its person.appeared
            "tracks_detected": c["tracks_detected"], "tracks_followed": c["tracks_followed"],
            "follow_doubts": c["follow_doubts"], "searches_full": c["searches_full"],
            "searches_region": c["searches_region"], "detect_every_frames": self.board.detector.every_frames,
            "still_frames": c["still_frames"], "cuts": c["cuts"],
            "appear_latency_frames": round(c["appear_latency_frames"] / c["appeared"], 2) if c["appeared"] else None,
        }

    def _maybe_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._window_t
        if not force and elapsed < self.board.stats.interval_s:
            return
        fps = self._window_frames / elapsed if elapsed > 0 else None
        self.last_stats = {"fps": None if fps is None else round(fps, 2)}
        payload = self.stats()
        payload["uptime_s"] = round(now - self.started_t, 1)
        self._window_t, self._window_frames, self._window_embeds = now, 0, 0
        self.bus.publish(ev.STATS, **payload)

    def run(self, stop: threading.Event) -> str:
        """Read and process frames until ``stop`` is set (-> "stopped") or the source ends (-> "ended")."""
        reason = "stopped"
        while not stop.is_set():
            frame = self.source.read()
            if frame is None:
                if self.source.ended():
                    reason = "ended"
                    break
                continue
            try:
                self.step(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the loop
                self.failed_frames += 1
                now = time.monotonic()
                if now - self._last_error_t >= ERROR_EVENT_INTERVAL_S:
                    self._last_error_t = now
                    self.bus.publish(ev.LOOP_ERROR, detail=f"frame {self.frame_index - 1}: "
                                                           f"{type(exc).__name__}: {exc}")
        for tr in self.tracker.drain():
            self._publish_left(tr)
        self._maybe_stats(force=True)
        return reason
