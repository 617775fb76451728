"""``wearface eval-board``: LFW View 2 of a bundle through the exact board path (detect, int8 align, int8 embed)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval-board", help="LFW View 2 of a bundle through the board path: detect, int8 align, int8 embed")
    p.add_argument("bundle", help="a signed bundle (.wfb), e.g. models/default.wfb")
    p.add_argument("--lfw", required=True, help="the LFW folder (lfw128.zip, pairs.txt)")
    p.add_argument("--board", default="", help="board file whose detector settings and key to use (default: boards/virtual.toml)")
    p.add_argument("--pairs", default="", help="pairs file (default: LFW_FOLDER/pairs.txt)")
    p.add_argument("--per-fold", type=int, default=0, help="only the first N matched and N mismatched pairs of each fold")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from wearface.firmware.board import boards_dir
    from wearface.host_tools.train.board_path_eval import evaluate_bundle_board_path

    board = args.board or str(boards_dir() / "virtual.toml")
    out = evaluate_bundle_board_path(args.bundle, board, args.lfw, args.pairs or None, args.per_fold,
                                     progress=not args.no_progress)
    print(f"{args.bundle}: board path (detect, int8 align, int8 embed) on LFW: {out.result.summary()}; "
          f"{out.undetected} of {out.images} images had no detection (their known LFW frame was used)")
    print(f"  transfer check (θ chosen on held-out CelebA identities), {out.at_theta_summary()}")
    return 0
