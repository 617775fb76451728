"""``BoardApp``: the board's application object, the one thing the serial server calls.

One job: wire the parts of the firmware together for one board and one flash folder — slots and boot
(``slots.py``, ``boot.py``), the model (``facemodel.py``), the gallery (``gallery.py``), the camera and
the loop (``camera.py``, ``pipeline.py``), events and the log file (``events.py``, ``log.py``) — and offer
the host's requests as methods.  Results are JSON-able dicts (numpy arrays only inside events, where the
protocol moves them as binary).  Refusals raise ``FirmwareError`` subclasses with a ``reason``.

Threads: the loop runs on its own thread; requests arrive on the server's.  Flash and reboot requests are
serialised by one lock, model use (loop frames, enrolment) by another.

Must not import torch.
"""
from __future__ import annotations

import base64
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Optional

import cv2
import numpy as np

from . import events as ev
from .align import FRAME_SIZE, window_from_params
from .boot import RECOVERY, RUNNING, Booter, Verifier
from .camera import open_camera
from .errors import CameraError, DetectError, EnrollError, GalleryError, NotRunningError
from .gallery import Gallery, check_name
from .log import BoardLog
from .pipeline import Pipeline
from .slots import SlotStore

#: an uploaded image with no detected face is taken as a face crop (LFW128 framing) up to this side
MAX_CROP_SIDE_PX = 200
#: a second face at least this fraction of the largest one's area makes an enrolment image ambiguous
SEVERAL_FACES_AREA_RATIO = 0.5
#: boot attempts in one call (a slot whose model fails to load is marked bad and the next one tried)
MAX_BOOT_ROUNDS = 3
#: enrolment from the camera waits at most this long per requested frame
CAPTURE_S_PER_FRAME = 2.0
LOOP_JOIN_TIMEOUT_S = 10.0
#: re-embedding publishes progress (and the loop re-reads the gallery) every this many crops
REEMBED_EVENT_EVERY = 8


def firmware_version() -> str:
    try:
        return metadata.version("wearface")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _detected_cpu() -> dict:
    """What this process's CPU reports (under qemu: the emulated CPU), beside what the board file says."""
    try:
        from wearface.kernels.cpu_features import detect

        found = detect()
        return {"machine": found.machine, "detected_dotprod": bool(found.arm_dotprod)}
    except Exception:  # noqa: BLE001 - info must answer even where feature detection is unavailable
        import platform

        return {"machine": platform.machine(), "detected_dotprod": None}


class BoardApp:
    """The firmware for ``board`` on the flash folder ``flash_dir`` (default: the board's ``flash.root``).

    Camera: ``frames`` (an iterable of BGR frames, or a callable returning a fresh one at each boot) wins
    over ``video`` (a file path), which wins over the board's ``[camera] source``.  ``verify`` replaces the
    bundle verifier (never in the shipped path; ``__main__`` does not pass it).  ``start=False``: boot later
    with ``start()``.
    """

    def __init__(self, board, flash_dir: str | Path | None = None, video: str | None = None,
                 frames: Iterable | Callable[[], Iterable] | None = None, verify: Verifier | None = None,
                 start: bool = True):
        self.board = board
        self.flash_dir = Path(board.flash_root(flash_dir))
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.video = video
        self._frames = frames
        self.bus = ev.EventBus()
        self.log = BoardLog(self.flash_dir / board.flash.log, board.flash.log_max_bytes)
        self.bus.subscribe(self.log.on_event)
        self.store = SlotStore.for_board(board, self.flash_dir)
        self.booter = Booter(board, self.store, self.bus, verify)
        self.gallery = Gallery(self.flash_dir / board.flash.gallery)
        self.started_t = time.monotonic()
        self.state = RECOVERY
        self.boot_result = None
        self.model = None
        self.pipeline: Optional[Pipeline] = None
        self.source = None
        self.loop_state = "stopped"
        self._debug_embeddings = False
        self._debug_explain = False
        self._flash_lock = threading.RLock()
        self._model_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._reembed_thread: Optional[threading.Thread] = None
        if start:
            self.start()

    # ------------------------------------------------------------------------------ boot and the loop

    def start(self) -> None:
        """Boot: choose and verify a slot, load its model, open the camera, start the loop thread.

        Debug embeddings are off after every boot: only a host's DEBUG_EMBEDDINGS request switches them on."""
        with self._flash_lock:
            self.set_debug_embeddings(False, reason="boot")
            self.log.info(f"firmware {firmware_version()} starting on board {self.board.name} "
                          f"({self.board.compatible}), flash {self.flash_dir}")
            try:  # the detector is the firmware's own (package data), not a slot's: it must not fail a slot
                from .facemodel import make_detector

                detector = make_detector(self.board.detector)
            except DetectError as exc:
                self.state, self.model = RECOVERY, None
                self.log.error(f"the board's face detector could not be loaded: {exc}")
                self.bus.publish(ev.BOOT_RECOVERY, reason=f"the board's face detector could not be loaded: {exc}")
                return
            for _ in range(MAX_BOOT_ROUNDS):
                result = self.booter.boot()
                self.boot_result = result
                if result.state == RECOVERY:
                    self.state, self.model = RECOVERY, None
                    return
                try:
                    from .facemodel import FaceModel

                    model = FaceModel(self.board, result.bundle, detector=detector)
                except Exception as exc:  # noqa: BLE001 - a model that cannot load is the slot's fault
                    self.booter.fail_running("model_load_failed", f"{type(exc).__name__}: {exc}")
                    continue
                self.model, self.state = model, RUNNING
                stale = self.gallery.set_model(str(result.bundle.embedding_space), float(result.bundle.threshold),
                                               result.bundle.cohort, result.bundle.cohort_k,
                                               result.bundle.gallery_match, result.bundle.threshold_by_count)
                if stale:
                    self.bus.publish(ev.GALLERY_NEEDS_REENROLMENT, names=stale,
                                     embedding_space=str(result.bundle.embedding_space))
                self._start_loop()
                if not result.trial:  # a confirmed slot: its space may still have crops to re-embed
                    self._on_confirmed(result, model)
                return
            self.state, self.model = RECOVERY, None
            self.bus.publish(ev.BOOT_RECOVERY, reason="no slot's model could be loaded")

    def _open_source(self):
        frames = self._frames() if callable(self._frames) else self._frames
        on_error = lambda reason, detail: self.bus.publish(ev.CAMERA_ERROR, reason=reason, detail=detail)  # noqa: E731
        return open_camera(self.board.camera, video=self.video, frames=frames, on_error=on_error)

    def _start_loop(self) -> None:
        try:
            self.source = self._open_source()
        except CameraError as exc:
            self.loop_state = "no_camera"
            self.bus.publish(ev.CAMERA_ERROR, reason=exc.reason, detail=str(exc))
            return
        self.pipeline = Pipeline(self.board, self.model, self.gallery, self.bus, self.source,
                                 model_lock=self._model_lock, on_frame=self._on_frame)
        self.pipeline.debug_embeddings = self._debug_embeddings
        self.pipeline.debug_explain = self._debug_explain
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(self.pipeline, self._stop),
                                        name="recognition-loop", daemon=True)
        self.loop_state = "running"
        self._thread.start()

    def _run_loop(self, pipeline: Pipeline, stop: threading.Event) -> None:
        reason = pipeline.run(stop)
        if reason == "ended":
            self.loop_state = "ended"
            self.bus.publish(ev.CAMERA_ENDED, frames=pipeline.frame_index)

    def _on_frame(self, healthy_frames: int) -> None:
        result = self.boot_result
        if result is not None and result.trial and healthy_frames >= self.board.boot.confirm_after_frames:
            # never wait for the lock here: a reboot holding it joins this very thread; try again next frame
            if self._flash_lock.acquire(blocking=False):
                try:
                    if self.boot_result is result:  # not a frame of a loop that a reboot is replacing
                        if self.booter.confirm(healthy_frames):
                            self._on_confirmed(result, self.model)
                finally:
                    self._flash_lock.release()

    # ------------------------------------------------------------------------------ the gallery across models

    def _on_confirmed(self, result, model) -> None:
        """A confirmed boot of ``result``'s space (never a trial boot): count it, then re-embed in the background
        every kept crop that has no embedding in this space; once the space has been confirmed at
        ``enrolment.drop_old_space_after_boots`` boots in a row, forget the other spaces' embeddings."""
        space = str(result.bundle.embedding_space)
        boots = self.gallery.count_confirmed_boot(space)
        stop = self._stop
        self._reembed_thread = threading.Thread(target=self._reembed, args=(model, space, boots, stop),
                                                name="gallery-reembed", daemon=True)
        self._reembed_thread.start()

    def _reembed(self, model, space: str, boots: int, stop: threading.Event) -> None:
        """Re-embed pending crops one at a time: the model lock is held for one embedding (~1-3 ms), so the loop
        waits at most that long; each result is its own transaction, so a power cut loses at most the one in
        flight and the next confirmed boot resumes with what is still pending."""
        pending = self.gallery.pending_crops(space)
        total, done = len(pending), 0
        version = str(model.bundle.model_version)
        if total:
            self.bus.publish(ev.GALLERY_REEMBED, state="started", done=0, total=total, embedding_space=space)
            self.log.info(f"gallery: re-embedding {total} kept crops into space {space}")
        for crop_id, _ in pending:
            if stop.is_set() or self.model is not model:
                self.bus.publish(ev.GALLERY_REEMBED, state="stopped", done=done, total=total, embedding_space=space)
                return
            try:
                crop = self.gallery.crop(crop_id)
            except GalleryError:  # deleted with its person meanwhile
                continue
            with self._model_lock:
                vector = model.embed(crop)
            self.gallery.add_reembedded(crop_id, vector, version, reload=False)
            done += 1
            if done % REEMBED_EVENT_EVERY == 0 or done == total:
                self.gallery.reload()
                if self.pipeline is not None:
                    self.pipeline.rematch()
                self.bus.publish(ev.GALLERY_REEMBED, state="progress" if done < total else "done", done=done,
                                 total=total, embedding_space=space)
        if total:
            self.log.info(f"gallery: re-embedded {done} of {total} crops into space {space}")
        keep_boots = self.board.enrolment.drop_old_space_after_boots
        if keep_boots and boots >= keep_boots and not self.gallery.pending_crops(space):
            dropped = self.gallery.drop_other_spaces(space)
            if dropped:
                self.bus.publish(ev.GALLERY_OLD_SPACE_DROPPED, embedding_space=space, dropped=dropped, boots=boots)
                self.log.info(f"gallery: dropped {dropped} embeddings of older spaces ({space} confirmed at {boots} boots)")

    def wait_reembedded(self, timeout_s: float | None = None) -> bool:
        """Wait for the background re-embedding (if any) to end; True if it did."""
        thread = self._reembed_thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def wait_loop(self, timeout_s: float | None = None) -> bool:
        """Wait for the loop thread to end (a finite source); True if it did."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def stop(self) -> None:
        """Stop the loop (if any) and close the camera."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(LOOP_JOIN_TIMEOUT_S)
        self._thread = None
        reembed = self._reembed_thread
        if reembed is not None and reembed is not threading.current_thread():
            reembed.join(LOOP_JOIN_TIMEOUT_S)  # it stops at its next crop: ``_stop`` is set
        self._reembed_thread = None
        if self.source is not None:
            self.source.close()
            self.source = None
        self.pipeline = None
        self.loop_state = "stopped"

    def reboot(self) -> None:
        """Boot again in this process: stop the loop, choose a slot (a pending one on trial), start the loop."""
        with self._flash_lock:
            self.log.info("reboot requested")
            self.stop()
            self.model = None
            self.start()

    def close(self) -> None:
        self.stop()
        self.gallery.close()
        self.log.close()

    # ------------------------------------------------------------------------------ requests: board

    def info(self) -> dict:
        b = self.board
        bundle = self.boot_result.bundle if self.boot_result is not None and self.state == RUNNING else None
        slots = self.store.describe()
        return {
            "board": b.name, "compatible": b.compatible, "firmware_version": firmware_version(),
            "state": self.state, "loop": self.loop_state,
            "active_slot": slots["active"], "pending_slot": slots["pending"], "confirmed_slot": slots["confirmed"],
            "trial": bool(self.boot_result and self.boot_result.trial and self.state == RUNNING),
            "boot_attempts": slots["boot_attempts"], "min_rollback": slots["min_rollback"], "slots": slots["slots"],
            "model": b.model,
            # public, and what the host verifies a bundle against before uploading it (empty: not provisioned)
            "public_keys": [base64.b64encode(k).decode("ascii") for k in b.public_keys],
            "model_version": None if bundle is None else str(bundle.model_version),
            "embedding_space": None if bundle is None else str(bundle.embedding_space),
            "threshold": None if bundle is None else float(bundle.threshold),
            "threshold_metric": None if bundle is None else bundle.threshold_metric,
            # θ for a person with 1, 2, ... enrolment images (the last for more); [] = "threshold" for everyone
            "threshold_by_count": [] if bundle is None else list(bundle.threshold_by_count),
            "gallery_match": None if bundle is None else bundle.gallery_match,
            "gallery_size": self.gallery.size(),
            "kernels_path": None if self.model is None else str(self.model.runtime_backend),
            "cpu": {"arch": b.cpu.arch, "core": b.cpu.core, "dotprod": b.cpu.dotprod, **_detected_cpu()},
            "frame_budget_ms": b.frame_budget_ms,
            "recovery_reason": self.boot_result.reason if self.boot_result is not None and self.state == RECOVERY
            else None,
            "uptime_s": round(time.monotonic() - self.started_t, 1),
            "debug_embeddings": self._debug_embeddings,
        }

    def flash_begin(self, size: int, sha256: bytes) -> dict:
        """Start or resume writing a bundle to the inactive slot: {"slot", "offset" (resume here), "size"}."""
        with self._flash_lock:
            part = self.store.begin_write(size, bytes(sha256))
            self.bus.publish(ev.FLASH_BEGIN, slot=part.slot, size_bytes=part.size_bytes, offset=part.offset)
            return {"slot": part.slot, "offset": part.offset, "size": part.size_bytes}

    def flash_chunk(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``; returns the new offset (``offset_mismatch`` carries where to resume)."""
        with self._flash_lock:
            return self.store.write_chunk(offset, bytes(data))

    def flash_end(self) -> dict:
        """Verify the whole image (hash, signature, compatible, anti-rollback, golden vectors) and mark its
        slot pending; it boots on trial at the next reboot.  BundleError/SlotError on failure."""
        with self._flash_lock:
            return self.booter.accept_written()

    # ------------------------------------------------------------------------------ requests: people

    def _require_model(self):
        if self.state != RUNNING or self.model is None:
            raise NotRunningError("recovery", "the board is in the recovery state (no valid model): flash a bundle")
        return self.model

    def _face_of(self, index: int, rgb: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
        """Align and embed the one face of an uploaded image; (embedding, how it was found, the 112 crop)."""
        model = self.model
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise EnrollError("bad_image", f"image {index}: expected uint8 (H, W, 3) RGB, found "
                                           f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
        bgr = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        h, w = bgr.shape[:2]
        with self._model_lock:
            boxes = sorted(model.detect(bgr), key=lambda b: -b.w * b.h)
            if len(boxes) > 1 and boxes[1].w * boxes[1].h >= SEVERAL_FACES_AREA_RATIO * boxes[0].w * boxes[0].h:
                raise EnrollError("several_faces", f"image {index} ({w}x{h}): {len(boxes)} faces of similar size; "
                                                   f"send a photo of one person or a crop")
            if boxes:
                b = boxes[0]
                crop, _ = model.align(bgr, (b.x, b.y, b.w, b.h))
                how = {"image": index, "mode": "detected", "box": [round(v, 1) for v in (b.x, b.y, b.w, b.h)]}
            elif max(h, w) <= MAX_CROP_SIDE_PX and abs(h - w) <= 0.1 * max(h, w):
                # a face crop in the LFW128 framing: its canonical 112 frame is the central 112/128
                window = window_from_params(((w - 1) / 2.0, (h - 1) / 2.0), w / (FRAME_SIZE + 16), 0.0)
                crop, _ = model.align_window(bgr, window)
                how = {"image": index, "mode": "crop"}
            else:
                raise EnrollError("no_face", f"image {index} ({w}x{h}): no face found")
            return model.embed(crop), how, crop

    def enroll_images(self, name: str, images: list) -> dict:
        """Enrol ``name`` from uploaded images (uint8 (H, W, 3) RGB, as the server decodes them): photos with
        one face, or face crops.  Detection, alignment and embedding run on the board, with the same code
        as the loop, so enrolment and recognition see faces the same way."""
        model = self._require_model()
        name = check_name(name)
        if not images:
            raise EnrollError("no_face", "no images sent")
        vectors, found, crops = [], [], []
        for i, image in enumerate(images):
            vector, how, crop = self._face_of(i, image)
            vectors.append(vector)
            found.append(how)
            crops.append(crop)
        return self._add(name, np.stack(vectors), found, model, crops)

    def enroll_from_camera(self, name: str, n_frames: int) -> dict:
        """Enrol ``name`` from the largest face in each of the next ``n_frames`` camera frames."""
        model = self._require_model()
        name = check_name(name)
        if not isinstance(n_frames, int) or not 1 <= n_frames <= 100:
            raise EnrollError("bad_request", f"n_frames: expected 1..100, found {n_frames!r}")
        pipeline = self.pipeline
        if pipeline is None or self.loop_state != "running":
            raise EnrollError("no_camera", f"the camera loop is not running ({self.loop_state})")
        request = pipeline.capture(n_frames, CAPTURE_S_PER_FRAME * n_frames + 5.0)
        if not request.embeddings:
            raise EnrollError("no_face", f"no face seen in the camera within {CAPTURE_S_PER_FRAME * n_frames + 5:.0f} s")
        found = [{"frame": i, "mode": "camera"} for i in range(len(request.embeddings))]
        return self._add(name, np.stack(request.embeddings), found, model, list(request.crops))

    def _add(self, name: str, vectors: np.ndarray, found: list, model, crops=None) -> dict:
        keep = crops if self.board.enrolment.keep_crops else None
        entry = self.gallery.add(name, vectors, str(model.bundle.model_version), crops=keep)
        mean = vectors.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        spread = np.linalg.norm(vectors - mean, axis=1)
        if self.pipeline is not None:
            self.pipeline.rematch()
        theta = self.gallery.threshold_for(name)  # this person's θ (by their enrolment count, when the model says)
        # the spread is a distance: with a cohort θ bounds a ratio, so also say what distance it means for this
        # person's mean, the scale the host compares the spread with
        distance_theta = self.gallery.distance_threshold(mean, name)
        result = {"name": name, "added": int(len(vectors)), "embeddings": entry["usable"],
                  "spread_mean": round(float(spread.mean()), 4), "spread_max": round(float(spread.max()), 4),
                  "threshold": theta, "distance_threshold": round(distance_theta, 4), "faces": found}
        self.log.info(f"enrolled {name}: {len(vectors)} embeddings, spread mean {result['spread_mean']}")
        return result

    def gallery_crops(self, name: str, max_crops: int = 3) -> list:
        """Up to ``max_crops`` kept enrolment crops of ``name`` (uint8 (112, 112, 3) RGB); ``unknown_name`` if nobody."""
        name = check_name(name)
        if name not in {p["name"] for p in self.gallery.list_people()}:
            raise GalleryError("unknown_name", f"nobody called {name!r} is enrolled")
        return self.gallery.crops_of(name)[:max_crops]

    def gallery_list(self) -> list[dict]:
        return self.gallery.list_people()

    def gallery_delete(self, name: str) -> int:
        count = self.gallery.delete(name)
        if self.pipeline is not None:
            self.pipeline.rematch()
        self.log.info(f"gallery: deleted {name} ({count} embeddings)")
        return count

    # ------------------------------------------------------------------------------ requests: health

    def set_debug_embeddings(self, on: bool, reason: str = "request", explain: bool = False) -> None:
        """Publish (or stop publishing) ``debug.embedding`` events, and with ``explain`` also ``debug.explain``
        records (the embedded crop, the alignment view, the nearest people): biometric data, so the serial server
        switches both off when the host that asked goes away (``reason``: "request", "boot", "host_gone",
        "host_silent")."""
        explain = bool(on) and bool(explain)
        changed = bool(on) != self._debug_embeddings or explain != self._debug_explain
        self._debug_embeddings, self._debug_explain = bool(on), explain
        if self.pipeline is not None:
            self.pipeline.debug_embeddings, self.pipeline.debug_explain = bool(on), explain
        if changed:
            self.log.info(f"debug embeddings {'on' if on else 'off'}{' with explain records' if explain else ''} ({reason})")

    def stats(self) -> dict:
        base = {"state": self.state, "loop": self.loop_state,
                "uptime_s": round(time.monotonic() - self.started_t, 1)}
        if self.pipeline is not None:
            base.update(self.pipeline.stats())
        return base

    def log_tail(self, n: int) -> list[str]:
        return self.log.tail(n)

    def subscribe(self, callback) -> Callable[[], None]:
        """``callback(event_dict)`` for every event from now on; returns an unsubscribe function."""
        return self.bus.subscribe(callback)


__all__ = ["BoardApp", "firmware_version"]
