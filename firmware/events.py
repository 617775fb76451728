"""The board's unsolicited events: their names, their payloads, and the bus that delivers them.

One job: make event dicts and hand them to subscribers (the serial server, the log file, tests).  An event
is a JSON-able dict ``{"event": NAME, "t": unix time s (float), **payload}``.  Names and payload keys:

Boot and slots (each decision is one event; also written to the log file):
    boot.verified       slot, model_version, rollback_counter
    boot.slot_bad       slot, reason (a BundleReason name, "hash_mismatch", "trial_boots_exhausted", ...), detail
    boot.trial          slot, attempt, max_attempts          a pending slot boots on trial
    boot.booted         slot, state="running", trial (bool), model_version, embedding_space
    boot.rollback       from_slot, to_slot, reason           the pending slot failed; the confirmed one boots
    boot.recovery       reason                               no bootable slot: no loop, flash still accepted
    boot.confirmed      slot, frames                         the trial slot ran healthily and is now confirmed
    boot.table_rebuilt  reason                               the slot table was missing or unreadable
    flash.begin         slot, size_bytes, offset (resume offset)
    flash.accepted      slot, model_version, rollback_counter   verified and marked pending (boots at reboot)
    flash.rejected      slot, reason, detail
Recognition (``track``: int id, stable while the person stays in view; ``box``: [x, y, w, h] frame px;
``frame``: index of the frame since the loop started; ``n_embeddings``: samples behind the decision):
    person.appeared     track, box, frame                    (after ``tracker.appear_after_hits`` frames)
    person.recognised   track, name, distance, margin, next_name, box, frame, n_embeddings    (margin: distance
                        to the next name minus distance; null when the gallery has one name).  Published once
                        the track has ``tracker.min_embeddings`` samples, and again only if the name changes.
    person.unknown      track, distance (to the nearest name; null for an empty gallery), nearest, box, frame,
                        n_embeddings
    person.left         track, name (last decision, null if unknown), frames_seen, duration_s, frame
    debug.embedding     track, embedding (float32 (128,) array, L2-normalised; binary on the wire), name,
                        distance, frame, n_embeddings  (only when the host switched debug embeddings on)
    debug.explain       track, frame, box, crop (uint8 (112, 112, 3) RGB: the embedded input), view (uint8
                        (50, 50, 3) RGB: the alignment net's input), alignment (float32 [dx, dy, angle_rad]), name,
                        distance, score, threshold, distance_threshold (the distance θ means for this probe: θ,
                        or θ x its cohort distance), nearest [{name, distance}] (3 nearest people, track's mean
                        embedding), n_embeddings  (only when the host asked with DEBUG_EMBEDDINGS explain=true)
Health:
    stats               fps, frames, healthy_frames, failed_frames, dropped_frames, corrupt_frames,
                        latency_ms {detect, align, embed, match, frame: mean ms per call}, p95_ms {same},
                        tracks, embeds, embeds_per_frame, frame_budget_ms, uptime_s
    camera.error        reason, detail         (the loop keeps trying)
    camera.ended        frames                 a video file without ``loop`` played to its end; the loop stops
    loop.error          detail                 (a frame raised; it is skipped and the loop goes on)
    gallery.needs_reenrolment  names, embedding_space (of the loaded model): no usable embedding and no kept crop
    gallery.reembed     state ("started", "progress", "done", "stopped"), done, total, embedding_space:
                        kept enrolment crops re-embedded with a newly confirmed model (in the background)
    gallery.old_space_dropped  embedding_space (kept), dropped (embeddings of other spaces forgotten), boots
"""
from __future__ import annotations

import threading
import time
from typing import Callable

BOOT_VERIFIED = "boot.verified"
BOOT_SLOT_BAD = "boot.slot_bad"
BOOT_TRIAL = "boot.trial"
BOOT_BOOTED = "boot.booted"
BOOT_ROLLBACK = "boot.rollback"
BOOT_RECOVERY = "boot.recovery"
BOOT_CONFIRMED = "boot.confirmed"
BOOT_TABLE_REBUILT = "boot.table_rebuilt"
FLASH_BEGIN = "flash.begin"
FLASH_ACCEPTED = "flash.accepted"
FLASH_REJECTED = "flash.rejected"
PERSON_APPEARED = "person.appeared"
PERSON_RECOGNISED = "person.recognised"
PERSON_UNKNOWN = "person.unknown"
PERSON_LEFT = "person.left"
DEBUG_EMBEDDING = "debug.embedding"
DEBUG_EXPLAIN = "debug.explain"
STATS = "stats"
CAMERA_ERROR = "camera.error"
CAMERA_ENDED = "camera.ended"
LOOP_ERROR = "loop.error"
GALLERY_NEEDS_REENROLMENT = "gallery.needs_reenrolment"
GALLERY_REEMBED = "gallery.reembed"
GALLERY_OLD_SPACE_DROPPED = "gallery.old_space_dropped"

#: events too frequent or too large for the log file
NOT_LOGGED = frozenset({DEBUG_EMBEDDING, DEBUG_EXPLAIN})

Event = dict
Subscriber = Callable[[Event], None]


def make_event(name: str, /, **payload) -> Event:
    """An event dict: ``{"event": name, "t": time.time(), **payload}``."""
    return {"event": name, "t": time.time(), **payload}


class EventBus:
    """Delivers each published event to every subscriber, in order, on the publishing thread.

    A subscriber that raises stays subscribed; its exception is counted in ``errors`` and swallowed, so
    one broken listener (e.g. a closed serial line) never stops the loop.
    """

    def __init__(self):
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.errors = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def publish(self, name: str, /, **payload) -> Event:
        event = make_event(name, **payload)
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a listener's failure must not stop the loop
                self.errors += 1
        return event


class EventRecorder:
    """A subscriber that keeps events in a list (tests, ``enroll`` waiting for frames)."""

    def __init__(self):
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def named(self, *names: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e["event"] in names]

    def wait_for(self, name: str, timeout_s: float, predicate=lambda e: True) -> Event | None:
        """Block until an event ``name`` satisfying ``predicate`` was recorded, or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for e in self.events:
                    if e["event"] == name and predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
