"""``wearface board emulate BOARD.toml`` (the real firmware on the board's ISA under qemu-aarch64, on a pty)
and ``wearface board prepare-emulation`` (build the arm64 userland it needs, once)."""
from __future__ import annotations

import sys
import time


def register(sub) -> None:
    p = sub.add_parser("board", help="emulate an aarch64 board (its real firmware under qemu on a pty)")
    verbs = p.add_subparsers(dest="board_verb", metavar="BOARD_VERB")

    e = verbs.add_parser("emulate", help="start a board's firmware under qemu-aarch64, on a pty, until Ctrl-C")
    e.add_argument("board", help="board file (boards/rpi-zero2w.toml, boards/a55-dotprod.toml)")
    e.add_argument("--flash", default=None, help="folder that plays the board's flash "
                                                 "(default: ~/.cache/wearface/emulated-<board name>)")
    e.add_argument("--userland", default=None, help="arm64 userland folder (default: ~/.cache/wearface/arm64)")
    e.add_argument("--video", default="synthetic", help="video file the camera plays, or 'synthetic' (default)")
    e.add_argument("--qemu-cpu", default=None, help="override the board's [emulation] qemu_cpu")
    e.add_argument("--no-dev-key", action="store_true",
                   help="emulate an unprovisioned board file as it ships (refuses every bundle) instead of trusting the dev key")
    e.add_argument("--duration-s", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    e.set_defaults(func=run_emulate)

    q = verbs.add_parser("prepare-emulation", help="build the arm64 userland (cached; ~30 s and ~0.5 GB once)")
    q.add_argument("--userland", default=None, help="folder (default: ~/.cache/wearface/arm64)")
    q.add_argument("--rebuild", action="store_true", help="build again even if the folder is ready")
    q.add_argument("--keep-downloads", action="store_true", help="keep the .debs and wheels (~150 MB)")
    q.add_argument("--apt-sources", default=None, help="apt sources file of an arm64 mirror "
                                                       "(default: this host's own Debian sources)")
    q.set_defaults(func=run_prepare)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_prepare(args) -> int:
    from pathlib import Path

    from wearface.host_tools.device import emulate

    userland = emulate.prepare_userland(args.userland, sources=Path(args.apt_sources) if args.apt_sources else None,
                                        keep_downloads=args.keep_downloads, rebuild=args.rebuild)
    stamp = userland.read_stamp() or {}
    timings = stamp.get("timings_s", {})
    print(f"arm64 userland: {userland.folder}")
    print(f"  python:   {userland.launcher}  (QEMU_CPU=cortex-a53|cortex-a76 picks the CPU)")
    print(f"  versions: numpy {' / numba '.join(stamp.get('versions', [])[:2])}, built {stamp.get('built_at')} "
          f"in {timings.get('total_s', '?')} s, {stamp.get('size_bytes', 0) / 1e6:.0f} MB")
    print(f"  qemu:     {stamp.get('qemu')}")
    return 0


def run_emulate(args) -> int:
    from pathlib import Path

    from wearface.firmware.board import load_board
    from wearface.host_tools.device import emulate
    from wearface.host_tools.device.virtual_board import exit_on_signals

    board = load_board(args.board)
    cpu = args.qemu_cpu or emulate.board_qemu_cpu(board)  # refuses a non-aarch64 board before any work
    flash = Path(args.flash).expanduser() if args.flash else Path.home() / ".cache" / "wearface" / f"emulated-{board.name}"
    start = time.perf_counter()
    userland = emulate.prepare_userland(args.userland)
    prepared_s = time.perf_counter() - start
    vb = emulate.emulated_board(args.board, flash, userland=userland, video=args.video, qemu_cpu=cpu,
                                dev_key=not args.no_dev_key)
    if not board.public_keys:
        print("board file trusts no key (real hardware ships unprovisioned): "
              + ("refusing every bundle (--no-dev-key)" if args.no_dev_key else "emulated with the development key"),
              flush=True)
    exit_on_signals()  # SIGTERM/SIGHUP stop the firmware too (the finally below), as Ctrl-C does
    vb.start()
    print(f"emulated board {board.name} ({board.cpu.core}, qemu {cpu}) running; userland ready in {prepared_s:.1f} s",
          flush=True)
    print(f"serial port: {vb.port}   (wearface flash {vb.port} BUNDLE.wfb; wearface monitor {vb.port})",
          flush=True)
    print(f"flash: {vb.flash_dir}   console: {vb.console_log}   Ctrl-C stops it", flush=True)
    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
            if vb.proc is not None and vb.proc.poll() is not None and not vb.restart:
                break
    except KeyboardInterrupt:
        print("stopping the emulated board", file=sys.stderr)
    finally:
        vb.stop()
    print(vb.console_tail(5), file=sys.stderr)
    return 0
