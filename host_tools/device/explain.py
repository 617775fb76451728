"""Explain panels: why the board named (or did not name) a face, one PNG per ``debug.explain`` record.

One job: turn the board's explain records into pictures a person can read.  A panel shows, left to right, the
50x50 view the alignment net saw (with its dx, dy, angle), the 112x112 crop the embedding net embedded, the
kept enrolment crops of the nearest person (fetched once per name with GALLERY_CROPS, only inside the explain
session), and the distances to the three nearest people as bars against θ.  ``index.jsonl`` beside the panels
lists every record (frame, track, decision, distances, file).  Crops are biometric data: the folder is the
user's; nothing here keeps them anywhere else.

Records arrive on the link's reader thread; the panels are drawn (and crops fetched) from the monitor's own
thread by ``flush``, because a request made from the reader thread would wait for itself.
"""
from __future__ import annotations

import json
import queue
from pathlib import Path

import cv2
import numpy as np

from wearface.firmware import protocol as P

SCALE = 2  # panel pixels per crop pixel
BAR_W, ROW_H, PAD = 320, 28, 8


def _label(img: np.ndarray, text: str, y: int, x: int = PAD, colour=(235, 235, 235)) -> None:
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def theta_line(record: dict) -> tuple[float, str]:
    """Where θ goes among a record's distance bars, and its label.  With a cohort (the decision's ``score`` is
    distance / the probe's cohort distance, not the distance) θ bounds the score, so the line is the distance θ
    means for this probe: the record's ``distance_threshold`` (θ x its cohort distance), or for a record without
    it (older firmware) θ x distance / score, the same figure."""
    theta = float(record.get("threshold") or 0.0)
    distance, score = record.get("distance"), record.get("score")
    shown = record.get("distance_threshold")  # the board's own figure (``Gallery.distance_threshold``)
    if isinstance(shown, (int, float)) and shown != theta:
        return float(shown), f"theta {theta:.3f} x cohort {shown / theta:.3f}" if theta > 0 else f"theta {theta:.3f}"
    if isinstance(distance, (int, float)) and isinstance(score, (int, float)) and score > 0 and score != distance:
        return theta * distance / score, f"theta {theta:.3f} x cohort {distance / score:.3f}"
    return theta, f"theta {theta:.3f}"


def render_panel(record: dict, enrolled: list[np.ndarray] | None = None) -> np.ndarray:
    """The panel of one ``debug.explain`` record as a BGR uint8 image."""
    crop = np.asarray(record["crop"], np.uint8)
    view = np.asarray(record["view"], np.uint8)
    side = crop.shape[0] * SCALE
    tiles = [cv2.resize(view, (side, side), interpolation=cv2.INTER_NEAREST),
             cv2.resize(crop, (side, side), interpolation=cv2.INTER_NEAREST)]
    tiles += [cv2.resize(np.asarray(c, np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) for c in (enrolled or [])[:2]]
    strip = np.concatenate([t[:, :, ::-1] for t in tiles], axis=1)  # RGB -> BGR
    nearest = record.get("nearest") or []
    theta, theta_text = theta_line(record)
    bars_h = PAD + ROW_H * (len(nearest) + 2)
    panel = np.full((side + 20 + bars_h, max(strip.shape[1], BAR_W + 200), 3), 32, np.uint8)
    panel[20:20 + side, :strip.shape[1]] = strip
    dx, dy, angle = (float(v) for v in np.asarray(record.get("alignment", [0, 0, 0]), np.float64)[:3])
    name = record.get("name")
    _label(panel, f"frame {record.get('frame')} track {record.get('track')}: "
                  f"{name if name else 'unknown'}  (align dx {dx:+.2f} dy {dy:+.2f} angle {np.degrees(angle):+.1f} deg)", 14)
    top = 20 + side + PAD
    d_max = max([theta * 1.5] + [float(n["distance"]) for n in nearest] + [1e-6])
    for i, n in enumerate(nearest):
        y = top + i * ROW_H
        w = int(BAR_W * float(n["distance"]) / d_max)
        colour = (80, 200, 80) if float(n["distance"]) < theta else (70, 70, 200)
        cv2.rectangle(panel, (150, y), (150 + w, y + ROW_H - 8), colour, -1)
        _label(panel, f"{n['name'][:16]}", y + 14)
        _label(panel, f"{float(n['distance']):.3f}", y + 14, 150 + w + 6)
    x_theta = 150 + int(BAR_W * theta / d_max)
    cv2.line(panel, (x_theta, top - 4), (x_theta, top + ROW_H * max(1, len(nearest))), (0, 215, 255), 2)
    _label(panel, theta_text, top + ROW_H * max(1, len(nearest)) + 16, x_theta - 30, (0, 215, 255))
    return panel


class ExplainWriter:
    """Collects ``debug.explain`` records (``on_event``) and writes their panels into ``folder`` (``flush``)."""

    def __init__(self, folder: str | Path, max_panels: int = 1000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_panels = max_panels
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=256)
        self._crops: dict[str, list] = {}

    def on_event(self, ev: dict) -> None:
        if ev.get("event") == "debug.explain" and self.written + self._queue.qsize() < self.max_panels:
            try:
                self._queue.put_nowait(ev)
            except queue.Full:  # the board is faster than the disk: drop, as the board drops events
                pass

    def _enrolled(self, link, name: str | None) -> list:
        if not name or link is None:
            return []
        if name not in self._crops:
            try:
                self._crops[name] = list(link.request(P.Opcode.GALLERY_CROPS, {"name": name, "max_crops": 2}).get("crops", []))
            except Exception:  # noqa: BLE001 - a panel without enrolment crops is still a panel
                self._crops[name] = []
        return self._crops[name]

    def flush(self, link=None) -> int:
        """Write the panels of the records received so far; returns how many were written now."""
        n = 0
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                return n
            nearest = ev.get("nearest") or []
            enrolled = self._enrolled(link, nearest[0]["name"] if nearest else None)
            file = f"explain_{int(ev.get('frame', 0)):07d}_track{int(ev.get('track', 0))}.png"
            cv2.imwrite(str(self.folder / file), render_panel(ev, enrolled))
            entry = {"file": file, "frame": ev.get("frame"), "track": ev.get("track"), "name": ev.get("name"),
                     "distance": ev.get("distance"), "score": ev.get("score"), "threshold": ev.get("threshold"),
                     "distance_threshold": ev.get("distance_threshold"), "nearest": nearest,
                     "alignment": [float(v) for v in np.asarray(ev.get("alignment", []), np.float64)],
                     "box": ev.get("box")}
            with open(self.folder / "index.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")
            self.written += 1
            n += 1


def contact_sheet(folder: str | Path, out: str | Path, max_panels: int = 12) -> str:
    """Up to ``max_panels`` panels of an explain folder (its index order) stacked into one PNG; returns a summary."""
    from wearface.host_tools.errors import DataError

    folder = Path(folder)
    index = folder / "index.jsonl"
    if not index.is_file():
        raise DataError(f"{folder}: no index.jsonl (made by `wearface monitor --explain {folder}`)")
    entries = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    panels = [cv2.imread(str(folder / e["file"])) for e in entries[:max_panels]]
    panels = [p for p in panels if p is not None]
    if not panels:
        raise DataError(f"{folder}: its index lists no readable panel")
    width = max(p.shape[1] for p in panels)
    sheet = np.concatenate([np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0))) for p in panels], axis=0)
    cv2.imwrite(str(out), sheet)
    named = sum(1 for e in entries if e.get("name"))
    return f"{out}: {len(panels)} of {len(entries)} panels ({named} named, {len(entries) - named} unknown)"
