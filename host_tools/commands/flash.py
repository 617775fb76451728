"""``wearface flash PORT BUNDLE``: verify, upload (resumable), reboot into the trial slot, await the verdict.

Exit codes: 0 confirmed (or uploaded with --no-reboot); 10 no answer / port missing; 11 the board refused a
request; 15 the board's verification rejected the upload; 16 the board rolled back; 17 no verdict in time;
21..31 the bundle failed the local check (20 + BundleReason: 26 bad signature, 27 unknown key, 29 incompatible
board, 30 rollback counter too old, ...); 3 the file is missing.
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("flash", help="put a model bundle on a board (resumable; reboots into the trial slot)")
    p.add_argument("port", help="serial port or URL: /dev/ttyUSB0, /dev/pts/N, FLASHDIR/tty, socket://host:port")
    p.add_argument("bundle", help="the .wfb bundle to flash")
    p.add_argument("--baud", type=int, default=921600)
    p.add_argument("--key", action="append", default=None,
                   help="trusted public key file/base64 for the local check (default: the keys the board reports)")
    p.add_argument("--chunk-bytes", type=int, default=None,
                   help="bytes per chunk (default 4096 below 460800 baud, else 16384: docs/BENCHMARKS.md)")
    p.add_argument("--window", type=int, default=2, help="chunks in flight (1 = stop-and-wait)")
    p.add_argument("--timeout-s", type=float, default=3.0, help="per-request timeout before the wire time")
    p.add_argument("--confirm-timeout-s", type=float, default=90.0)
    p.add_argument("--resume-timeout-s", type=float, default=30.0,
                   help="how long the board may be gone mid-upload before giving up (rerun to resume)")
    p.add_argument("--no-reboot", action="store_true", help="leave the new slot pending")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for scripts)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from wearface.host_tools.bundle.keys import load_public_key
    from wearface.host_tools.device.flash import ProgressBar, flash
    from wearface.host_tools.device.link import Link
    from wearface.host_tools.errors import DataError

    path = Path(args.bundle)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the bundle ({exc.strerror})") from None
    chunk_bytes = args.chunk_bytes or (4096 if args.baud < 460800 else 16384)
    keys = [load_public_key(k) for k in args.key] if args.key else None
    say = (lambda m: print(m, file=sys.stderr)) if not args.no_progress else (lambda m: print(m))
    with Link(args.port, baud=args.baud, timeout_s=args.timeout_s) as link:
        result = flash(link, data, name=str(path), trusted_keys=keys, chunk_bytes=chunk_bytes,
                       progress=None if args.no_progress else ProgressBar(), reboot=not args.no_reboot,
                       confirm_timeout_s=args.confirm_timeout_s, resume_timeout_s=args.resume_timeout_s, log=say,
                       window=args.window)
    resumed = f", resumed from byte {result.resumed_from}" if result.resumed_from else ""
    print(f"flashed {path.name} ({result.size_bytes} bytes, sha256 {result.sha256[:16]}...) into slot "
          f"{result.slot} in {result.upload_s:.1f} s ({result.rate_bytes_s / 1024:.1f} KiB/s{resumed})")
    if result.confirmed:
        print(f"slot {result.slot} confirmed: the board runs model {result.model_version}")
    else:
        print(f"slot {result.slot} pending (not rebooted)")
    return 0
