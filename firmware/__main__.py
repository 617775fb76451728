"""``python -m wearface.firmware``: the firmware process (what the board's init starts at boot).

    python -m wearface.firmware --board boards/virtual.toml [--flash DIR] [--port PATH|fd:N] [--video FILE]

Builds the ``BoardApp`` (boot: slot choice, model, camera, loop) and serves the host on the serial port
until SIGTERM/SIGINT/SIGHUP, or, with ``--parent-pipe N``, until the supervisor holding that pipe's write end
dies (``lifeline.py``: the virtual board passes it, so its firmware never outlives it).  ``--port`` defaults to the board's
``serial.device``; a board whose device is
``"pty"`` (the virtual board) opens a pseudo-terminal and prints its name.  A bad board file or an
unusable port ends the process with one line on stderr and exit status 2 (systemd then retries).
"""
from __future__ import annotations

import os

# One BLAS thread: the loop is one thread already, and OpenBLAS's own threads turned a ~1 ms model A run
# into 432 ms worst cases under load (docs/BENCHMARKS.md, kernels section).  Must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from .board import load_board  # noqa: E402
from .errors import FirmwareError  # noqa: E402

EXIT_BAD_SETUP = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wearface.firmware",
                                     description="The wearface board firmware: recognition loop + serial server.")
    parser.add_argument("--board", required=True, help="board file (boards/*.toml)")
    parser.add_argument("--flash", default=None, help="flash folder (default: the board's flash.root)")
    parser.add_argument("--port", default=None, help="serial port: a device path, a pyserial URL or fd:N "
                                                     "(default: the board's serial.device)")
    parser.add_argument("--video", default=None, help="video file the camera plays (instead of the board's camera)")
    parser.add_argument("--baud", type=int, default=None, help="baud rate (default: the board's serial.baud)")
    parser.add_argument("--parent-pipe", type=int, default=None, metavar="FD",
                        help="read end of a pipe the supervisor holds open: EOF (the supervisor died) stops the firmware")
    return parser


def _open_pty() -> str:
    """Open a pseudo-terminal for the virtual board; returns ``fd:N`` of its master side."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    print(f"wearface firmware: serial port {os.ttyname(slave)}", flush=True)
    return f"fd:{master}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        board = load_board(args.board)
    except FirmwareError as exc:
        print(f"wearface firmware: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETUP
    # a second bound behind images.py's header check: OpenCV's own decoders refuse more pixels than this
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(board.enrolment.max_image_pixels))
    port = args.port or board.serial.device
    if port == "pty":
        port = _open_pty()
    from .app import BoardApp
    from .server import serve

    stop = threading.Event()

    def _terminate(signum, frame):
        stop.set()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _terminate)
    if args.parent_pipe is not None:
        from .lifeline import watch_parent_pipe

        def _parent_gone():
            print("wearface firmware: the supervisor is gone (parent pipe closed); stopping", flush=True)
            stop.set()
        watch_parent_pipe(args.parent_pipe, _parent_gone)

    try:
        app = BoardApp(board, flash_dir=args.flash, video=args.video)
    except FirmwareError as exc:
        print(f"wearface firmware: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETUP
    print(f"wearface firmware: board {board.name}, state {app.state}, flash {app.flash_dir}", flush=True)
    try:
        serve(port, app, stop_event=stop, baud=args.baud or board.serial.baud,
              max_image_pixels=board.enrolment.max_image_pixels)
    except FirmwareError as exc:
        print(f"wearface firmware: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETUP
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
