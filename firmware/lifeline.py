"""Stop the firmware when the process that supervises it dies, however it dies (SIGKILL included).

One job: watch the read end of a pipe whose write end only the supervisor holds (the virtual board, ``wearface
board emulate``).  The kernel closes that write end when the supervisor exits for any reason, and the read end
then reads EOF: the firmware stops instead of living on as an orphan on a pty nobody can reach.  Portable (no
``prctl(PR_SET_PDEATHSIG)``, which fires when the *thread* that forked exits, and exists on Linux only).

    watch_parent_pipe(fd, on_parent_gone)   # a daemon thread; on_parent_gone() once, at EOF or a read error

A real board has no supervisor pipe (systemd starts the firmware); ``python -m wearface.firmware --parent-pipe N``
turns this on.
"""
from __future__ import annotations

import os
import select
import threading
from typing import Callable

#: how often the watcher wakes to see whether it should give up (only matters when ``stop`` is given)
POLL_S = 0.5


def watch_parent_pipe(fd: int, on_parent_gone: Callable[[], None],
                      stop: threading.Event | None = None) -> threading.Thread:
    """Start a daemon thread that calls ``on_parent_gone()`` once when ``fd`` (a pipe's read end) reads EOF or
    fails; it ends quietly if ``stop`` is set first.  Bytes written to the pipe are read and ignored."""

    def watch() -> None:
        while stop is None or not stop.is_set():
            try:
                readable, _, _ = select.select([fd], [], [], POLL_S)
                if not readable:
                    continue
                if os.read(fd, 512):
                    continue
            except (OSError, ValueError):
                pass
            on_parent_gone()
            return

    thread = threading.Thread(target=watch, name="parent-pipe", daemon=True)
    thread.start()
    return thread
