"""The camera: frames from OpenCV (a device index or a video file) or from a source given in code.

One job: hand the loop one BGR uint8 (H, W, 3) frame at a time and count what went wrong.  A failed
read is a *dropped* frame, a frame of the wrong shape or type a *corrupt* one; both are counted and
skipped, never fatal.  A device that keeps failing is reopened; a video file starts again at its end when
``loop`` is set (a virtual camera never runs dry), else the source ends (``read`` returns None).

numpy + OpenCV only.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, Optional

import cv2
import numpy as np

from .errors import CameraError

#: after this many failed reads in a row a device is closed and opened again
REOPEN_AFTER_FAILURES = 30
#: pause after a failed read of a device (a camera that is being replugged)
FAILED_READ_PAUSE_S = 0.05


class FrameSource:
    """Base class: ``read()`` -> frame, or None when the source has ended.  Counters: ``frames`` (good
    frames handed out), ``dropped`` (reads that gave nothing), ``corrupt`` (frames that were unusable)."""

    def __init__(self, on_error: Optional[Callable[[str, str], None]] = None):
        self.frames = 0
        self.dropped = 0
        self.corrupt = 0
        self.on_error = on_error or (lambda reason, detail: None)
        self.shape: tuple | None = None

    def _grab(self) -> tuple[bool, object]:
        """(ok, frame): ok False = nothing came (dropped); (True, None) is never returned for the end."""
        raise NotImplementedError

    def ended(self) -> bool:
        return False

    def read(self, max_tries: int = 100) -> Optional[np.ndarray]:
        """The next good frame (BGR uint8 (H, W, 3), C-contiguous), or None when the source ended or
        ``max_tries`` reads in a row failed (the loop calls again)."""
        for _ in range(max_tries):
            if self.ended():
                return None
            ok, frame = self._grab()
            if self.ended():
                return None
            if not ok:
                self.dropped += 1
                continue
            good = self._check(frame)
            if good is None:
                self.corrupt += 1
                continue
            self.frames += 1
            return good
        return None

    def _check(self, frame) -> Optional[np.ndarray]:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim == 3 and frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        elif not (frame.ndim == 3 and frame.shape[2] == 3):
            return None
        if frame.shape[0] < 8 or frame.shape[1] < 8:
            return None
        self.shape = frame.shape
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        pass

    def counters(self) -> dict:
        return {"frames": self.frames, "dropped_frames": self.dropped, "corrupt_frames": self.corrupt}


class IterableSource(FrameSource):
    """Frames from any iterable given in code (tests, the synthetic scene).  Items that are None or not
    images count as dropped/corrupt frames."""

    def __init__(self, frames: Iterable, fps: float = 0.0, on_error=None):
        super().__init__(on_error)
        self._it: Iterator = iter(frames)
        self._done = False
        self._period_s = 1.0 / fps if fps > 0 else 0.0
        self._next_t = time.monotonic()

    def ended(self) -> bool:
        return self._done

    def _grab(self):
        if self._period_s:
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_t = max(self._next_t + self._period_s, time.monotonic() - self._period_s)
        try:
            frame = next(self._it)
        except StopIteration:
            self._done = True
            return False, None
        return frame is not None, frame


class VideoCaptureSource(FrameSource):
    """OpenCV ``VideoCapture`` on a device index or a video file.

    ``loop``: a file starts again at its end.  ``pace_fps``: a file is read no faster than this (a camera
    would not be faster either); 0 = as fast as the loop takes frames (tests, benchmarks).
    """

    def __init__(self, source, width: int = 0, height: int = 0, loop: bool = False, pace_fps: float = 0.0,
                 on_error=None):
        super().__init__(on_error)
        self.source = source
        self.is_file = not isinstance(source, int)
        self.loop = loop
        self.width, self.height = width, height
        self._period_s = 1.0 / pace_fps if pace_fps > 0 else 0.0
        self._next_t = time.monotonic()
        self._failures = 0
        self._done = False
        self.cap = self._open()
        file_fps = self.cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        if self._period_s and file_fps and 1.0 <= file_fps <= 240.0:
            self._period_s = 1.0 / file_fps

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.source) if self.is_file else int(self.source))
        if not cap.isOpened():
            cap.release()
            kind = "video file" if self.is_file else "camera device"
            raise CameraError("camera_unavailable", f"{kind} {self.source!r}: OpenCV cannot open it")
        if not self.is_file and self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def ended(self) -> bool:
        return self._done

    def _grab(self):
        if self._period_s:
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_t = max(self._next_t + self._period_s, time.monotonic() - self._period_s)
        ok, frame = self.cap.read()
        if ok:
            self._failures = 0
            return True, frame
        if self.is_file:
            at = self.cap.get(cv2.CAP_PROP_POS_FRAMES)
            total = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if total <= 0 or at >= total - 1 or self._failures > 0:
                if not self.loop:
                    self._done = True
                    return False, None
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._failures += 1
                if self._failures > 2:  # even the first frame cannot be read: give up on this file
                    self.on_error("camera_unavailable", f"video file {self.source!r}: no frame can be read")
                    self._done = True
                return False, None
            self._failures += 1  # an undecodable frame in the middle of the file: skip it
            return False, None
        self._failures += 1
        time.sleep(FAILED_READ_PAUSE_S)
        if self._failures % REOPEN_AFTER_FAILURES == 0:
            self.on_error("camera_unavailable", f"camera {self.source!r}: {self._failures} failed reads, reopening")
            self.cap.release()
            try:
                self.cap = self._open()
            except CameraError as exc:
                self.on_error(exc.reason, str(exc))
        return False, None

    def close(self) -> None:
        self.cap.release()


def open_camera(config, video: str | None = None, frames: Iterable | None = None, on_error=None) -> FrameSource:
    """The frame source a board's ``[camera]`` asks for: ``frames`` (given in code) wins, then ``video``
    (a file path, from ``--video``), then ``config.source`` (device index, file path or "synthetic")."""
    if frames is not None:
        return IterableSource(frames, on_error=on_error)
    source = video if video is not None else config.source
    if source == "synthetic":
        from .scene import portrait_scene, scene_frames

        n_frames = int(config.fps * 6)
        actors = portrait_scene(config.width, config.height, n_frames)
        return IterableSource(scene_frames(actors, n_frames, config.width, config.height, loop=config.loop),
                              fps=config.fps, on_error=on_error)
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    pace = config.fps if (not isinstance(source, int) and config.pace) else 0.0
    return VideoCaptureSource(source, config.width, config.height, loop=config.loop, pace_fps=pace,
                              on_error=on_error)
