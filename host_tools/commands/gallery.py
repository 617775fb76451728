"""``wearface gallery list|delete PORT [NAME]``: who the board knows; forget someone (exit 14: unknown name)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("gallery", help="list or delete enrolled people on the board")
    gsub = p.add_subparsers(dest="gallery_verb", metavar="list|delete", required=True)
    lp = gsub.add_parser("list", help="enrolled people and their embedding counts")
    lp.add_argument("port")
    lp.add_argument("--baud", type=int, default=921600)
    lp.set_defaults(func=run_list)
    dp = gsub.add_parser("delete", help="forget a person")
    dp.add_argument("port")
    dp.add_argument("name")
    dp.add_argument("--baud", type=int, default=921600)
    dp.set_defaults(func=run_delete)


def run_list(args) -> int:
    from wearface.firmware import protocol as P
    from wearface.host_tools.device.link import Link

    with Link(args.port, baud=args.baud) as link:
        people = link.request(P.Opcode.GALLERY_LIST)["people"]
    if not people:
        print("gallery is empty")
    for person in people:
        stale = "  NEEDS RE-ENROLMENT (older model, no kept crop)" if person.get("needs_reenrolment") else ""
        spaces = person.get("spaces")
        spaces = ", ".join(f"{s[:12]}: {n}" for s, n in spaces.items()) if isinstance(spaces, dict) else ""
        pending = "" if person.get("usable") or not person.get("crops") else "  (re-embedding pending: crops kept)"
        print(f"{person['name']:<24} {person.get('usable', '?')} usable / {person.get('embeddings', '?')} "
              f"embeddings, {person.get('crops', 0)} crops kept; spaces {{{spaces}}}{pending}{stale}")
    return 0


def run_delete(args) -> int:
    from wearface.firmware import protocol as P
    from wearface.host_tools.device.link import Link

    with Link(args.port, baud=args.baud) as link:
        count = link.request(P.Opcode.GALLERY_DELETE, {"name": args.name})["deleted"]
    print(f"deleted {args.name} ({count} embeddings)")
    return 0
