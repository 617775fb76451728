"""``wearface monitor PORT`` (watch the board's events; Ctrl-] quits) and ``wearface plot FILE.npz``."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("monitor", help="watch a board: events, fps, latency, log lines (Ctrl-] quits)")
    p.add_argument("port", help="serial port or URL (FLASHDIR/tty for the virtual board)")
    p.add_argument("--baud", type=int, default=921600)
    p.add_argument("--view", choices=("events", "raw", "hex"), default="events",
                   help="decoded lines (default), each frame's JSON, or a hexdump of every byte")
    p.add_argument("--only", action="append", help="show only events matching this glob (e.g. 'person.*')")
    p.add_argument("--exclude", action="append", help="hide events matching this glob (e.g. stats)")
    p.add_argument("--grep", help="show only lines containing this text")
    p.add_argument("--record", metavar="FILE.npz", help="switch debug embeddings on and save them here")
    p.add_argument("--explain", metavar="DIR", help="switch explain records on and save a PNG panel per decision "
                                                    "(crop, alignment view, nearest people vs θ) and DIR/index.jsonl")
    p.add_argument("--plot", metavar="FILE.png", help="with --record: render the recording at the end")
    p.add_argument("--duration-s", type=float, help="stop after this long (default: until Ctrl-])")
    p.add_argument("--log-lines", type=int, default=10, help="board log lines to show on connect")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=run_monitor)

    q = sub.add_parser("plot", help="render a monitor recording (npz) as a PNG: PCA, distance vs θ, latency")
    q.add_argument("recording", help="FILE.npz from `wearface monitor --record`, or a DIR from `--explain`")
    q.add_argument("-o", "--out", help="PNG path (default: beside the recording)")
    q.set_defaults(func=run_plot)


def run_monitor(args) -> int:
    from wearface.host_tools.device.monitor import EventFilter, Monitor, Recorder

    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    recorder = Recorder() if args.record else None
    explainer = None
    if args.explain:
        from wearface.host_tools.device.explain import ExplainWriter

        explainer = ExplainWriter(args.explain)
    mon = Monitor(args.port, baud=args.baud, colour=colour, view=args.view,
                  event_filter=EventFilter(args.only, args.exclude, args.grep), recorder=recorder,
                  log_lines=args.log_lines, explainer=explainer)
    try:
        mon.run(args.duration_s)
    except KeyboardInterrupt:
        pass
    print(mon.summary(), file=sys.stderr)
    if explainer is not None:
        print(f"wrote {explainer.written} explain panels to {args.explain} (index.jsonl)", file=sys.stderr)
    if recorder is not None:
        n = recorder.save(args.record)
        print(f"recorded {n} debug embeddings to {args.record}", file=sys.stderr)
        if args.plot:
            from wearface.host_tools.device.plot import plot_recording

            print(f"plot: {plot_recording(args.record, args.plot)}", file=sys.stderr)
    return 0


def run_plot(args) -> int:
    from pathlib import Path

    from wearface.host_tools.device.plot import plot_recording

    if Path(args.recording).is_dir():
        from wearface.host_tools.device.explain import contact_sheet

        out = args.out or str(Path(args.recording) / "sheet.png")
        print(contact_sheet(args.recording, out))
        return 0
    out = args.out or str(Path(args.recording).with_suffix(".png"))
    print(plot_recording(args.recording, out))
    return 0
