"""The board's log file on the flash: one line per event or message, size-capped, readable as a tail.

One job: append lines (``2026-11-28T18:00:00.123Z INFO boot.booted slot=A trial=False ...``) to
``<flash>/firmware.log`` with Python's ``logging`` (a ``RotatingFileHandler`` keeps one old file), and
read the last N lines back for the host's ``log tail``.  Lines are flushed at once, so a killed process
loses none; a power loss may lose the lines the OS had not written yet (they are not fsynced, on purpose:
the slot table and the gallery are the state that must survive, the log is for people).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import time
from pathlib import Path

from .events import NOT_LOGGED, Event

_COUNTER = iter(range(1 << 62))
_COUNTER_LOCK = threading.Lock()


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def format_event(event: Event) -> str:
    """``name key=value ...`` (the ``t`` key is the line's own timestamp)."""
    parts = [event["event"]] + [f"{k}={_value(v)}" for k, v in event.items() if k not in ("event", "t")]
    return " ".join(parts)


class BoardLog:
    """Append-only log file with rotation at ``max_bytes`` (one ``.1`` file kept).  Thread-safe."""

    def __init__(self, path: str | Path, max_bytes: int = 1024 * 1024):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _COUNTER_LOCK:
            name = f"wearface.board.{next(_COUNTER)}"
        self._logger = logging.getLogger(name)
        self._logger.propagate = False
        self._logger.setLevel(logging.DEBUG)
        self._handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=1,
                                                             encoding="utf-8")
        self._handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
        self._logger.addHandler(self._handler)

    def write(self, message: str, level: int = logging.INFO) -> None:
        record = self._logger.makeRecord(self._logger.name, level, __file__, 0, message, None, None)
        self._logger.handle(record)

    def info(self, message: str) -> None:
        self.write(message, logging.INFO)

    def warning(self, message: str) -> None:
        self.write(message, logging.WARNING)

    def error(self, message: str) -> None:
        self.write(message, logging.ERROR)

    def on_event(self, event: Event) -> None:
        """EventBus subscriber: every event except the high-rate ones becomes a line."""
        if event["event"] in NOT_LOGGED:
            return
        level = logging.WARNING if event["event"] in (
            "boot.slot_bad", "boot.rollback", "boot.recovery", "flash.rejected", "camera.error", "loop.error",
            "boot.table_rebuilt") else logging.INFO
        self.write(format_event(event), level)

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines of the log files on the flash (this boot's and earlier ones), oldest first.
        ``n`` is checked by the serial server (``request_args``: 0..MAX_LOG_TAIL_LINES)."""
        n = max(int(n), 0)
        if n == 0:
            return []
        lines: list[str] = []
        for path in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                # lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085, ... inside a line
                text = path.read_text("utf-8", errors="replace").rstrip("\n")
            except FileNotFoundError:
                continue
            if text:
                lines += text.split("\n")
        return lines[-n:]

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
