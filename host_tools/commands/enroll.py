"""``wearface enroll PORT --name NAME IMAGES...`` (or ``--camera N``): teach the board a face.

Detection and alignment happen on the board (same code and model as its loop); see host_tools/device/enroll.py.
Exit codes: 12 no face in an image, 13 several faces, 10 no answer, 11 other refusal, 3 unreadable image.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("enroll", help="enrol a person on the board from photos or its camera")
    p.add_argument("port", help="serial port or URL (FLASHDIR/tty for the virtual board)")
    p.add_argument("images", nargs="*", help="photos with one face each (or face crops)")
    # nargs="+": `enroll PORT --name NAME IMAGES...` works although argparse cannot mix positionals around options
    p.add_argument("--name", required=True, nargs="+", metavar=("NAME", "IMAGES"),
                   help="the person's name (images may follow it)")
    p.add_argument("--camera", type=int, metavar="N", help="instead of photos: the next N camera frames")
    p.add_argument("--baud", type=int, default=921600)
    p.set_defaults(func=run)


def run(args) -> int:
    from wearface.host_tools.device.enroll import describe, enroll_camera, enroll_photos
    from wearface.host_tools.device.link import Link
    from wearface.host_tools.errors import DataError

    args.name, args.images = args.name[0], list(args.images) + args.name[1:]
    if bool(args.images) == bool(args.camera):
        raise DataError("enroll: give either IMAGES or --camera N (not both, not neither)")
    with Link(args.port, baud=args.baud) as link:
        result = enroll_camera(link, args.name, args.camera) if args.camera else \
            enroll_photos(link, args.name, args.images)
    print(describe(result))
    return 0
