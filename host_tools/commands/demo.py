"""``wearface demo``: virtual board + real flash + enrolment + a video through its camera + monitor + summary."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole thing on this machine: virtual board, flash, enrol, video, monitor")
    p.add_argument("--video", help="video file for the board's camera (default: a synthetic Grace Hopper scene)")
    p.add_argument("--enroll", action="append", metavar="NAME=PHOTO", default=[],
                   help="enrol NAME from PHOTO before the video (repeatable; default: grace=grace_hopper.jpg)")
    p.add_argument("--bundle", help="bundle to flash (default: models/default.wfb)")
    p.add_argument("--flash-dir", help="use this folder as the board's flash (default: a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (flash, scene video, recording)")
    p.add_argument("--record", metavar="FILE.npz", help="save the debug embeddings of the pass")
    p.add_argument("--plot", metavar="FILE.png", help="render the recording (PCA, distance vs θ, latency)")
    p.add_argument("--no-forget", action="store_true", help="skip the forget-and-see-unknown step (default scene only)")
    p.add_argument("--explain", metavar="DIR", help="save an explain panel per decision of the pass (crop, alignment "
                                                    "view, nearest people vs θ) into DIR")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from wearface.host_tools.device.demo import run_demo
    from wearface.host_tools.errors import DataError

    pairs = []
    for item in args.enroll:
        name, sep, photo = item.partition("=")
        if not sep or not name or not photo:
            raise DataError(f"--enroll {item!r}: expected NAME=PHOTO")
        pairs.append((name, photo))
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    return run_demo(video=args.video, enroll=pairs, bundle=args.bundle, flash_dir=args.flash_dir, keep=args.keep,
                    record=args.record, plot=args.plot, progress=not args.no_progress, colour=colour,
                    forget=not args.no_forget, explain=args.explain)
