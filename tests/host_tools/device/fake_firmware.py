"""Stand-in for ``python -m wearface.firmware`` with the fake app (tests only): same arguments, same server."""
from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_app import FakeApp  # noqa: E402

from wearface.firmware.server import serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--board")
    parser.add_argument("--flash")
    parser.add_argument("--port")
    parser.add_argument("--video")
    parser.add_argument("--parent-pipe", type=int, default=None)
    args = parser.parse_args()
    app = FakeApp()
    stop = threading.Event()
    if args.parent_pipe is not None:
        from wearface.firmware.lifeline import watch_parent_pipe

        watch_parent_pipe(args.parent_pipe, stop.set)
    app.reboot = lambda: os._exit(0)  # the supervisor boots it again
    ticker = threading.Thread(target=lambda: [app.emit("stats", fps=1.0) for _ in iter(lambda: stop.wait(0.2), True)],
                              daemon=True)
    ticker.start()
    serve(args.port, app, stop)


if __name__ == "__main__":
    main()
