"""Watch a board think: decoded events with timestamps and colours, fps and latency, log lines, a raw/hex view.

One job: turn the board's event stream into lines for a person (``idf.py monitor`` / miniterm for this board),
and optionally record the debug embeddings.  Pieces, miniterm-style: a :class:`EventFormatter` (event -> line),
:class:`Recorder` (debug embeddings and decisions -> npz), :class:`Console` (Ctrl-] to quit, restores the
terminal), :class:`Monitor` (a :class:`~wearface.host_tools.device.link.Link` that reconnects by itself, wiring them).

Must not import torch or OpenCV.
"""
from __future__ import annotations

import fnmatch
import json
import os
import select
import sys
import termios
import threading
import time
import tty
from collections import defaultdict
from typing import Callable, TextIO

import numpy as np

from wearface.firmware import protocol as P

from ..errors import DataError
from .link import Link

EXIT_CHAR = b"\x1d"  # Ctrl-]
STAGES = ("detect", "follow", "align", "embed", "match", "frame")

COLOURS = {"red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m", "magenta": "\033[35m",
           "cyan": "\033[36m", "dim": "\033[2m", "bold": "\033[1m", "reset": "\033[0m"}
EVENT_COLOURS = [("person.recognised", "green"), ("person.unknown", "yellow"), ("person.*", "blue"),
                 ("boot.rollback", "red"), ("boot.slot_bad", "red"), ("boot.recovery", "red"),
                 ("flash.rejected", "red"), ("*.error", "red"), ("boot.*", "cyan"), ("flash.*", "cyan"),
                 ("stats", "dim"), ("debug.*", "dim"), ("link.*", "magenta")]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, np.ndarray):
        return f"<{value.dtype}{list(value.shape)}>"
    return str(value)


def _score(ev: dict) -> str:
    """``"  score S"`` when the decision carries one (a bundle with a cohort: θ bounds the score, not the distance)."""
    return f"  score {_fmt(ev['score'])}" if isinstance(ev.get("score"), (int, float)) else ""


class EventFormatter:
    """One line per event: ``HH:MM:SS.mmm  name  key=value ...``, coloured by kind when ``colour``."""

    def __init__(self, colour: bool = False):
        self.colour = colour

    def paint(self, text: str, colour: str | None) -> str:
        if not self.colour or colour is None:
            return text
        return f"{COLOURS[colour]}{text}{COLOURS['reset']}"

    def colour_of(self, name: str) -> str | None:
        for pattern, colour in EVENT_COLOURS:
            if fnmatch.fnmatchcase(name, pattern):
                return colour
        return None

    def stamp(self, t: float | None) -> str:
        t = time.time() if t is None else t
        return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"

    def body(self, name: str, ev: dict) -> str:
        if name == "stats":
            lat = ev.get("latency_ms") or {}
            stages = " ".join(f"{s} {lat[s]:.1f}" for s in STAGES if isinstance(lat.get(s), (int, float)))
            fps = ev.get("fps")
            follow = (f"  followed {ev['tracks_followed']} detected {ev.get('tracks_detected')} "
                      f"(full search every {ev.get('detect_every_frames')} frames, appear latency "
                      f"{ev.get('appear_latency_frames')})") if "tracks_followed" in ev else ""
            follow += f"  still {ev['still_frames']}" if ev.get("still_frames") else ""
            follow += f"  cuts {ev['cuts']}" if ev.get("cuts") else ""
            return (f"fps {fps if fps is not None else '-'}  ms: {stages}  tracks {ev.get('tracks', '-')}  "
                    f"frames {ev.get('frames', '-')} dropped {ev.get('dropped_frames', 0)}{follow}")
        if name == "person.recognised":
            margin = ev.get("margin")
            return (f"track {ev.get('track')}: {self.paint(str(ev.get('name')), 'bold')}  distance "
                    f"{_fmt(ev.get('distance'))}{_score(ev)}  margin {_fmt(margin) if margin is not None else '-'}"
                    f"{'  (next ' + str(ev['next_name']) + ')' if ev.get('next_name') else ''}")
        if name == "person.unknown":
            return f"track {ev.get('track')}: unknown  nearest {ev.get('nearest')} at {_fmt(ev.get('distance'))}{_score(ev)}"
        if name == "debug.embedding":
            return (f"track {ev.get('track')}: {ev.get('name') or 'unknown'} d={_fmt(ev.get('distance'))} "
                    f"embedding {_fmt(ev.get('embedding'))}")
        skip = {"event", "t"}
        return "  ".join(f"{k}={_fmt(v)}" for k, v in ev.items() if k not in skip)

    def line(self, ev: dict) -> str:
        name = str(ev.get("event", "?"))
        return f"{self.paint(self.stamp(ev.get('t')), 'dim')}  {self.paint(f'{name:<18}', self.colour_of(name))}  " \
               f"{self.body(name, ev)}"


class EventFilter:
    """``only``/``exclude``: glob patterns on event names (``person.*``); ``grep``: substring of the line."""

    def __init__(self, only: list[str] | None = None, exclude: list[str] | None = None, grep: str | None = None):
        self.only, self.exclude, self.grep = list(only or []), list(exclude or []), grep

    def wants(self, name: str, line: str = "") -> bool:
        if self.only and not any(fnmatch.fnmatchcase(name, p) for p in self.only):
            return False
        if any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
            return False
        return self.grep is None or self.grep in line


class Recorder:
    """Debug embeddings with track ids, times and the board's decisions, written as one npz.

    Arrays: ``t`` (N,) float64 unix s; ``track`` (N,) int32; ``frame`` (N,) int64; ``embedding`` (N, D) float32
    (L2-normalised, as the board sent it); ``name`` (N,) str — the board's match for that embedding ("" when
    unknown); ``distance`` (N,) float32 to the nearest enrolled person (NaN with an empty gallery); ``score`` (N,)
    float32, what the board compared with θ (the distance, or with a bundle that carries a cohort the distance /
    the probe's k-th nearest cohort distance; NaN when the board did not say); ``threshold`` () float32 θ;
    ``threshold_metric`` () str, the bundle's rule ("l2", "l2_cohort", or "" when unknown); ``stats_t`` (M,),
    ``fps`` (M,), ``latency_<stage>_ms`` (M,) from the stats events (mean per stats window);
    ``decision_t``/``decision_track``/``decision_name`` for person.recognised/unknown events.
    """

    def __init__(self):
        self.rows: list[tuple] = []
        self.stats: list[dict] = []
        self.decisions: list[tuple] = []
        self.threshold = float("nan")
        self.threshold_metric = ""
        self.lock = threading.Lock()

    def clear(self) -> None:
        """Forget everything recorded so far (keeps θ)."""
        with self.lock:
            self.rows.clear(), self.stats.clear(), self.decisions.clear()

    def on_event(self, ev: dict) -> None:
        name = ev.get("event")
        with self.lock:
            if name == "debug.embedding":
                emb = np.asarray(ev.get("embedding"), np.float32).reshape(-1)
                dist, score = ev.get("distance"), ev.get("score")
                self.rows.append((float(ev.get("t", 0.0)), int(ev.get("track", -1)), int(ev.get("frame", -1)), emb,
                                  str(ev.get("name") or ""), float("nan") if dist is None else float(dist),
                                  float("nan") if score is None else float(score)))
            elif name == "stats":
                self.stats.append(ev)
            elif name in ("person.recognised", "person.unknown"):
                self.decisions.append((float(ev.get("t", 0.0)), int(ev.get("track", -1)),
                                       str(ev.get("name") or "") if name == "person.recognised" else ""))

    def save(self, path: str) -> int:
        """Write the npz (atomically); returns the number of embeddings."""
        with self.lock:
            rows, stats, decisions = list(self.rows), list(self.stats), list(self.decisions)
        dim = max((len(r[3]) for r in rows), default=0)
        emb = np.zeros((len(rows), dim), np.float32)
        for i, r in enumerate(rows):
            emb[i, :len(r[3])] = r[3]
        arrays = {
            "t": np.array([r[0] for r in rows], np.float64), "track": np.array([r[1] for r in rows], np.int32),
            "frame": np.array([r[2] for r in rows], np.int64), "embedding": emb,
            "name": np.array([r[4] for r in rows], dtype=str), "distance": np.array([r[5] for r in rows], np.float32),
            "score": np.array([r[6] for r in rows], np.float32),
            "threshold": np.float32(self.threshold), "threshold_metric": np.array(self.threshold_metric),
            "stats_t": np.array([s.get("t", 0.0) for s in stats], np.float64),
            "fps": np.array([s.get("fps") if s.get("fps") is not None else np.nan for s in stats], np.float32),
            "decision_t": np.array([d[0] for d in decisions], np.float64),
            "decision_track": np.array([d[1] for d in decisions], np.int32),
            "decision_name": np.array([d[2] for d in decisions], dtype=str),
        }
        for stage in STAGES:
            arrays[f"latency_{stage}_ms"] = np.array(
                [((s.get("latency_ms") or {}).get(stage) or np.nan) for s in stats], np.float32)
        tmp = f"{path}.tmp.npz"
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        except OSError as exc:
            raise DataError(f"{path}: cannot write the recording ({exc.strerror})") from None
        return len(rows)


class Console:
    """Ctrl-] watcher on a terminal stdin (cbreak mode, restored on exit); does nothing when stdin is no tty."""

    def __init__(self, on_exit: Callable[[], None], stream=None):
        self.on_exit = on_exit
        self.stream = stream if stream is not None else sys.stdin
        self._saved = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Console":
        try:
            fd = self.stream.fileno()
            if not os.isatty(fd):
                return self
        except (AttributeError, ValueError, OSError):
            return self
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._watch, args=(fd,), daemon=True, name="console")
        self._thread.start()
        return self

    def _watch(self, fd: int) -> None:
        while not self._stop.is_set():
            if select.select([fd], [], [], 0.1)[0] and EXIT_CHAR in os.read(fd, 64):
                self.on_exit()
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)


class Monitor:
    """Print (and record) a board's events until stopped.  Survives the board rebooting or vanishing.

    ``view``: "events" (decoded lines), "raw" (each frame's JSON), "hex" (every byte received, hexdump).
    """

    def __init__(self, url: str, baud: int = 921600, out: TextIO | None = None, colour: bool = False,
                 view: str = "events", event_filter: EventFilter | None = None, recorder: Recorder | None = None,
                 log_lines: int = 10, on_event: Callable[[dict], None] | None = None, explainer=None):
        self.url, self.baud, self.out = url, baud, out if out is not None else sys.stdout
        self.fmt = EventFormatter(colour)
        self.view = view
        self.filter = event_filter or EventFilter()
        self.recorder = recorder
        #: ``explain.ExplainWriter``: explain records on (DEBUG_EMBEDDINGS explain) and drawn as panels
        self.explainer = explainer
        self.log_lines = log_lines
        self.extra_on_event = on_event
        self.stop_event = threading.Event()
        #: count and record events but print nothing (the demo while it flashes and enrols)
        self.quiet = False
        self.counts: dict[str, int] = defaultdict(int)
        self.last_stats: dict = {}
        self.delays_ms: list[float] = []
        self._print_lock = threading.Lock()
        self._hex_offset = 0
        self._resync = threading.Event()
        self._next_ping = 0.0
        self.link = Link(url, baud=baud, timeout_s=2.0, on_event=self._on_frame,
                         on_raw=self._on_raw if view == "hex" else None, on_link=self._on_link, open_timeout_s=10.0)

    def emit(self, text: str) -> None:
        if self.quiet:
            return
        with self._print_lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _on_raw(self, data: bytes) -> None:
        for i in range(0, len(data), 16):
            piece = data[i:i + 16]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in piece)
            self.emit(f"{self._hex_offset:08x}  {piece.hex(' '):<47}  {text}")
            self._hex_offset += len(piece)

    def _on_link(self, up: bool) -> None:
        name = "link.up" if up else "link.lost"
        self.emit(self.fmt.line({"event": name, "t": time.time(), "port": self.url}))
        if up:
            self._resync.set()  # the board may have rebooted: switch debug embeddings on again, show its state

    def _on_frame(self, frame: P.Frame) -> None:
        ev = frame.payload
        name = str(ev.get("event", "?"))
        self.counts[name] += 1
        if isinstance(ev.get("t"), (int, float)):
            self.delays_ms.append((time.time() - ev["t"]) * 1e3)
        if name == "stats":
            self.last_stats = ev
        if self.recorder is not None:
            self.recorder.on_event(ev)
        if self.explainer is not None:
            self.explainer.on_event(ev)
        if self.extra_on_event is not None:
            self.extra_on_event(ev)
        if self.view == "hex" or self.quiet:
            return
        line = self.fmt.line(ev)
        if not self.filter.wants(name, line):
            return
        if self.view == "raw":
            self.emit(json.dumps({"seq": frame.seq, **{k: (_fmt(v) if isinstance(v, np.ndarray) else v)
                                                     for k, v in ev.items()}}, default=str))
        else:
            self.emit(line)

    def _greet(self) -> None:
        """Board summary, the tail of its log, and (when recording) debug embeddings on."""
        try:
            info = self.link.request(P.Opcode.INFO)
            if self.recorder is not None:
                self.recorder.threshold = float(info.get("threshold") or np.nan)
                self.recorder.threshold_metric = str(info.get("threshold_metric") or "")
            if self.recorder is not None or self.explainer is not None:
                self.link.request(P.Opcode.DEBUG_EMBEDDINGS, {"on": True, "explain": self.explainer is not None})
            self.emit(self.fmt.paint(
                f"--- board {info.get('board')} ({info.get('compatible')}), state {info.get('state')}, slot "
                f"{info.get('active_slot')} model {info.get('model_version')}, gallery {info.get('gallery_size')} "
                f"people --- Ctrl-] quits", "bold"))
            if self.log_lines and self.view == "events":
                for text in self.link.request(P.Opcode.LOG_TAIL, {"n": self.log_lines}).get("lines", []):
                    self.emit(self.fmt.paint(f"  log | {text}", "dim"))
        except Exception as exc:  # noqa: BLE001 - the monitor keeps watching even if the greeting fails
            self.emit(f"--- board not answering requests yet ({exc}); watching events ---")

    def start(self) -> "Monitor":
        """Open the link (the board may still be booting) and greet the board."""
        self.link.open()
        self._greet()
        return self

    def watch(self, duration_s: float | None = None) -> None:
        """Print events until Ctrl-] (on a terminal), ``stop_event`` or ``duration_s``."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        self.stop_event.clear()
        with Console(self.stop_event.set):
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self._resync.wait(timeout=0.1):
                    self._resync.clear()
                    self._greet()
                self._keep_debug_session()
                if self.explainer is not None:
                    self.explainer.flush(self.link)

    def _keep_debug_session(self) -> None:
        """The board ends a debug-embeddings session after DEBUG_SESSION_IDLE_S without a request: while
        recording, PING every third of that."""
        if (self.recorder is None and self.explainer is None) or time.monotonic() < self._next_ping:
            return
        self._next_ping = time.monotonic() + P.DEBUG_SESSION_IDLE_S / 3
        try:
            self.link.request(P.Opcode.PING, retries=0)
        except Exception:  # noqa: BLE001 - a lost link is reported as link.lost; the greeting re-enables them
            pass

    def close(self) -> None:
        if self.explainer is not None:
            self.explainer.flush(self.link if self.link.connected else None)
        if (self.recorder is not None or self.explainer is not None) and self.link.connected:
            try:
                self.link.request(P.Opcode.DEBUG_EMBEDDINGS, {"on": False}, retries=0)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.link.close()

    def run(self, duration_s: float | None = None) -> int:
        """start, watch, close; returns 0."""
        self.start()
        try:
            self.watch(duration_s)
        finally:
            self.close()
        return 0

    def summary(self) -> str:
        delays = np.array(self.delays_ms) if self.delays_ms else np.array([np.nan])
        return (f"events: {dict(sorted(self.counts.items()))}; link: {self.link.stats.reconnects} reconnects, "
                f"{self.link.stats.events_lost} events lost; board->host delay median {np.nanmedian(delays):.1f} ms")
