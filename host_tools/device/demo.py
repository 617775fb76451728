"""``wearface demo``: the whole product on this machine, through the real paths, with nothing else present.

One job: orchestrate.  Start the virtual board (the real firmware in its own process on a pty, a temp folder as
flash), flash the shipped bundle through the real flash path, enrol people through the real enrol path, play a
video through the board's camera while the monitor watches, and print a summary: who was recognised when, fps,
per-stage latency, the slot state.  Default input needs no ``../shared``: a scene made from the portrait that
matplotlib ships (``grace_hopper.jpg``), moving, turning and relit (``firmware/scene.py`` renders it).  No other
face photo ships with the installed packages, so the "don't know" case is shown by making the board forget the
enrolled person and letting the same face come back: the board must then answer "unknown".
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from wearface.firmware import protocol as P

from ..errors import DataError, HostToolError
from .virtual_board import VirtualBoard

STAGES = ("detect", "follow", "align", "embed", "match", "frame")
SCENE_FPS = 30.0
SCENE_FRAMES = 240
DEFAULT_NAME = "grace"


def default_bundle_path() -> Path:
    from wearface.firmware.board import boards_dir

    return boards_dir().parent / "models" / "default.wfb"


def grace_hopper_photo() -> Path:
    from wearface.firmware.scene import grace_hopper_path

    return grace_hopper_path()


def make_default_scene(path: Path) -> tuple[Path, int, float]:
    """Write the default scene: Grace Hopper walks in turning and relit, leaves, comes back smaller and darker
    from the other side.  Returns (video path, frames, fps)."""
    from wearface.firmware.scene import Actor, grace_hopper_face, scene_frames, write_video

    face = grace_hopper_face()
    actors = [
        Actor(face, start=10, stop=115, from_xy=(0.22, 0.42), to_xy=(0.62, 0.55), size_px=(150, 200),
              max_angle_deg=14.0, light=0.35),
        Actor(face, start=140, stop=230, from_xy=(0.78, 0.5), to_xy=(0.4, 0.45), size_px=(130, 110),
              max_angle_deg=10.0, light=0.45),
    ]
    write_video(path, scene_frames(actors, SCENE_FRAMES), fps=SCENE_FPS)
    return path, SCENE_FRAMES, SCENE_FPS


def video_length(path: Path) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video")
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
    cap.release()
    if n <= 0:
        raise DataError(f"{path}: the video reports no frames")
    return n, fps if 1.0 <= fps <= 240.0 else 30.0


@dataclass
class Timeline:
    """What the board said during the pass, collected from events (the monitor's ``on_event`` hook)."""

    n_frames: int
    fps: float
    started: bool = False
    max_frame: int = -1
    decisions: list = field(default_factory=list)   # (frame, track, name or None, distance, margin, score or None)
    left: list = field(default_factory=list)         # (frame, track, name, frames_seen, duration_s)
    boot: list = field(default_factory=list)
    stats: list = field(default_factory=list)
    after_forget: list = field(default_factory=list)
    forgetting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, ev: dict) -> None:
        name = ev.get("event", "")
        with self.lock:
            if name.startswith("boot."):
                self.boot.append(ev)
                if name == "boot.booted":
                    self.started, self.max_frame = True, -1
                    self.decisions.clear(), self.left.clear(), self.stats.clear()
                return
            if not self.started:
                return
            frame = ev.get("frame")
            if isinstance(frame, int):
                self.max_frame = max(self.max_frame, frame)
            if name == "stats":
                self.stats.append(ev)
                if isinstance(ev.get("frames"), int):
                    self.max_frame = max(self.max_frame, ev["frames"] - 1)
            elif name in ("person.recognised", "person.unknown"):
                row = (frame, ev.get("track"), ev.get("name") if name == "person.recognised" else None,
                       ev.get("distance"), ev.get("margin"), ev.get("score"))
                (self.after_forget if self.forgetting else self.decisions).append(row)
            elif name == "person.left" and not self.forgetting:
                self.left.append((frame, ev.get("track"), ev.get("name"), ev.get("frames_seen"), ev.get("duration_s")))

    def video_s(self, frame) -> str:
        if not isinstance(frame, int):
            return "?"
        loop, k = divmod(frame, self.n_frames)
        return f"{k / self.fps:5.2f} s" + (f" (loop {loop + 1})" if loop else "")


def _fmt_dist(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_lines(tl: Timeline, info: dict, board_stats: dict, link_stats, monitor_summary: str) -> list[str]:
    lines = ["", "=== wearface demo: summary ==="]
    lines.append(f"video: {tl.n_frames} frames at {tl.fps:.1f} fps; the board processed frames 0..{tl.max_frame}")
    rows = []
    for frame, track, name, dist, margin, score in tl.decisions:
        what = f"recognised {name}" if name else "unknown"
        # with a cohort (rule "l2_cohort") θ bounds the score, not the distance: show what was compared
        scored = "" if score is None else f"  score {_fmt_dist(score)}"
        rows.append((frame, 0, f"track {track}: {what:<22} distance {_fmt_dist(dist)}{scored}  margin {_fmt_dist(margin)}"))
    for frame, track, name, seen, dur in tl.left:
        rows.append((frame, 1, f"track {track} left ({name or 'unknown'}, {seen} frames, {dur} s)"))
    lines.append("who was recognised when (video time, board's decisions per track):" if tl.decisions
                 else "no person decisions during the pass")
    for frame, _, text in sorted(rows, key=lambda r: (r[0] if isinstance(r[0], int) else -1, r[1])):
        lines.append(f"  {tl.video_s(frame)}  frame {frame if frame is not None else '?':>4}  {text}")
    if tl.after_forget:
        frame, track, name, dist, _, _ = tl.after_forget[-1]
        stale = len(tl.after_forget) - 1
        lines.append(f"after `gallery delete`: track {track} at {tl.video_s(frame)} -> "
                     f"{'recognised ' + str(name) if name else 'unknown'} (distance {_fmt_dist(dist)})"
                     + (f"; {stale} decision(s) made before the deletion took effect came first" if stale else ""))
    lat, p95 = board_stats.get("latency_ms") or {}, board_stats.get("p95_ms") or {}
    fps_values = [s.get("fps") for s in tl.stats if isinstance(s.get("fps"), (int, float))]
    fps_txt = f"{sum(fps_values) / len(fps_values):.1f} (mean of {len(fps_values)} stats windows)" if fps_values \
        else str(board_stats.get("fps"))
    lines.append(f"fps: {fps_txt}; frame budget {board_stats.get('frame_budget_ms')} ms; "
                 f"embeds per frame {board_stats.get('embeds_per_frame')}; tracks followed "
                 f"{board_stats.get('tracks_followed')} vs detected {board_stats.get('tracks_detected')}, full search "
                 f"every {board_stats.get('detect_every_frames')} frames, appear latency "
                 f"{board_stats.get('appear_latency_frames')} frames"
                 + (f", still frames skipped {board_stats['still_frames']}" if board_stats.get("still_frames") else "")
                 + (f", cuts (every track ended) {board_stats['cuts']}" if board_stats.get("cuts") else ""))
    lines.append("latency per stage, ms (mean / p95 over the board's last stats window): " + ", ".join(
        f"{s} {lat[s]:.1f}/{p95.get(s, float('nan')):.1f}" for s in STAGES if isinstance(lat.get(s), (int, float))))
    lines.append(f"slots: active {info.get('active_slot')}, confirmed {info.get('confirmed_slot')}, pending "
                 f"{info.get('pending_slot')}, trial {info.get('trial')}; model {info.get('model_version')} "
                 f"({_theta_words(info)}), kernels {info.get('kernels_path')}")
    lines.append(f"serial: {link_stats.requests} requests, {link_stats.retries} retries, "
                 f"{link_stats.reconnects} reconnects; {monitor_summary}")
    return lines


def run_demo(video: str | None = None, enroll: list[tuple[str, str]] | None = None, bundle: str | None = None,
             flash_dir: str | None = None, keep: bool = False, record: str | None = None, plot: str | None = None,
             progress: bool = True, colour: bool = False, out=None, forget: bool = True,
             max_wait_s: float | None = None, explain: str | None = None) -> int:
    from .enroll import describe, enroll_photos
    from .flash import ProgressBar, flash
    from .monitor import EventFilter, Monitor, Recorder

    out = out if out is not None else sys.stdout
    say = lambda text: (out.write(text + "\n"), out.flush())  # noqa: E731
    work = Path(flash_dir) if flash_dir else Path(tempfile.mkdtemp(prefix="wearface-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if video:
        video_path = Path(video)
        n_frames, fps = video_length(video_path)
        scene_note = str(video_path)
    else:
        video_path, n_frames, fps = make_default_scene(work / "scene.avi")
        scene_note = f"synthetic scene from grace_hopper.jpg ({video_path})"
    if not enroll:
        enroll = [] if video else [(DEFAULT_NAME, str(grace_hopper_photo()))]
    for name, photo in enroll:
        if not Path(photo).is_file():
            raise DataError(f"--enroll {name}={photo}: no such photo")
    bundle_path = Path(bundle) if bundle else default_bundle_path()
    if bundle_path.is_file():
        data = bundle_path.read_bytes()
        bundle_note = str(bundle_path)
    elif bundle:
        raise DataError(f"{bundle_path}: no such bundle")
    else:
        from ..bundle.bundle_build import build_test_bundle

        data = build_test_bundle()
        bundle_note = "a test bundle with RANDOM weights (models/default.wfb is missing): names are meaningless"
    flash_root = work / "flash"
    say(f"wearface demo: flash folder {flash_root}; video {scene_note}; bundle {bundle_note}")

    timeline = Timeline(n_frames, fps)
    recorder = Recorder() if record or plot else None
    explainer = None
    if explain:
        from .explain import ExplainWriter

        explainer = ExplainWriter(explain)
    board = VirtualBoard(flash_root, video=str(video_path))
    board.start()
    mon = Monitor(str(board.port), colour=colour, event_filter=EventFilter(exclude=["debug.*", "stats"]),
                  recorder=recorder, log_lines=0, on_event=timeline.on_event, out=out, explainer=explainer)
    mon.quiet = True
    try:
        mon.start()
        info = mon.link.request(P.Opcode.INFO)
        say(f"[1/5] virtual board up on {board.port} -> {board.port.resolve()}: state {info.get('state')}, "
            f"slot {info.get('active_slot')}")
        say(f"[2/5] flash {bundle_path.name if bundle_path.is_file() else 'test bundle'} "
            f"({len(data)} bytes) through the serial flash path")
        result = flash(mon.link, data, name=bundle_path.name, progress=ProgressBar() if progress else None, log=say)
        say(f"      slot {result.slot} confirmed, uploaded in {result.upload_s:.1f} s "
            f"({result.rate_bytes_s / 1024:.0f} KiB/s over the pty)")
        say("[3/5] enrol (detection and alignment on the board)")
        for name, photo in enroll:
            say("      " + describe(enroll_photos(mon.link, name, [photo])) + f"  <- {Path(photo).name}")
        say(f"[4/5] reboot so the camera starts the video at frame 0; play one pass ({n_frames} frames, "
            f"{n_frames / fps:.1f} s) and monitor:")
        with timeline.lock:
            timeline.started = False
        mon.link.request(P.Opcode.REBOOT, timeout_s=30.0)
        if recorder is not None or explainer is not None:  # a board boots with them off (biometric data)
            mon.link.request(P.Opcode.DEBUG_EMBEDDINGS, {"on": True, "explain": explainer is not None}, timeout_s=30.0)
        booted_by = time.monotonic() + 60.0
        while not timeline.started and time.monotonic() < booted_by:
            mon.watch(0.1)  # events of the previous pass still in flight stay quiet
        mon.quiet = False
        if recorder is not None:
            recorder.clear()  # the recording is the pass, not the flash and enrolment before it
        deadline = time.monotonic() + (max_wait_s or max(30.0, 6.0 * n_frames / fps + 20.0))
        while time.monotonic() < deadline and timeline.max_frame < n_frames - 1:
            mon.watch(0.25)
        if timeline.max_frame < n_frames - 1:
            say(f"      (stopped waiting at frame {timeline.max_frame}: the board is slower than expected)")
        if forget and enroll and not video:  # with a real clip other people keep deciding; the check would blur
            name = enroll[0][0]
            mon.quiet = True
            with timeline.lock:
                timeline.forgetting = True
            mon.link.request(P.Opcode.GALLERY_DELETE, {"name": name})
            say(f"[5/5] the board forgets {name} (`gallery delete`); the same face must now be unknown")
            mon.quiet = False
            stop_at = time.monotonic() + max(8.0, 3.0 * n_frames / fps)
            # a decision the board made just before the deletion may arrive after it was asked for; the board
            # re-matches every track when its gallery changes, so wait for a decision that does not name the person
            while time.monotonic() < stop_at and all(d[2] == name for d in timeline.after_forget):
                mon.watch(0.25)
        mon.quiet = True
        info = mon.link.request(P.Opcode.INFO)
        board_stats = mon.link.request(P.Opcode.STATS)
        for line in summary_lines(timeline, info, board_stats, mon.link.stats, mon.summary()):
            say(line)
        if explainer is not None:
            explainer.flush(mon.link)
            say(f"wrote {explainer.written} explain panels to {explain} (index.jsonl; `wearface plot {explain}`)")
        if recorder is not None:
            rec_path = record or str(work / "demo_embeddings.npz")
            say(f"recorded {recorder.save(rec_path)} debug embeddings to {rec_path}")
            if plot:
                from .plot import plot_recording

                say(f"plot: {plot_recording(rec_path, plot)}")
    except HostToolError:
        say("board console (last lines):\n" + board.console_tail())
        raise
    finally:
        mon.close()
        board.stop()
        if not keep and not flash_dir:
            shutil.rmtree(work, ignore_errors=True)
        elif keep:
            say(f"kept {work}")
    return 0


def _theta_words(info: dict) -> str:
    """The model's θ as the board info gives it: one θ, or θ by a person's enrolment images."""
    table = info.get("threshold_by_count") or []
    if not table:
        return f"θ {info.get('threshold')}"
    counts = "/".join(str(i + 1) for i in range(len(table))) + "+"
    return f"θ {'/'.join(str(t) for t in table)} for {counts} enrolment images"
