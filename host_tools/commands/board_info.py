"""``wearface info PORT`` (board, slots, model), ``wearface stats PORT``, ``wearface log PORT``."""
from __future__ import annotations

import json


def register(sub) -> None:
    for verb, helptext in (("info", "the board: family, slots, model, gallery size"),
                           ("stats", "the recognition loop: fps, per-stage latency, counters"),
                           ("log", "the tail of the board's log file")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("port")
        p.add_argument("--baud", type=int, default=921600)
        p.add_argument("--json", action="store_true", help="print the raw answer as JSON")
        if verb == "log":
            p.add_argument("-n", type=int, default=40, help="lines")
        p.set_defaults(func=run, verb_name=verb)


def run(args) -> int:
    from wearface.firmware import protocol as P
    from wearface.host_tools.device.link import Link

    opcode = {"info": P.Opcode.INFO, "stats": P.Opcode.STATS, "log": P.Opcode.LOG_TAIL}[args.verb_name]
    payload = {"n": args.n} if args.verb_name == "log" else None
    with Link(args.port, baud=args.baud) as link:
        out = link.request(opcode, payload)
    if args.verb_name == "log" and not args.json:
        print("\n".join(out.get("lines", [])))
    elif args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for key, value in out.items():
            print(f"{key:<18} {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")
    return 0
