"""``wearface train-align`` / ``eval-align`` / ``measure-detector``: the geometry verbs.

Heavy imports (torch, OpenCV) stay inside the functions.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train-align", help="self-supervised training of the alignment net (CPU, resumable)")
    p.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    p.add_argument("--out", required=True, help="run folder: last.pt (resume point) and align.pt")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-per-source", type=int, default=0, help="images per source (0 = all)")
    p.add_argument("--sources", default="wild,more,aligned", help="comma list of wild, more, aligned")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--narrow-fraction", type=float, default=0.5,
                   help="share of perturbations drawn near the detector's measured spread (rest: broad uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.set_defaults(func=run_train)

    p = sub.add_parser("eval-align", help="alignment error on LFW (detector boxes) and on held-out CelebA")
    p.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    p.add_argument("--checkpoint", required=True, help="an align checkpoint (models/checkpoints/align.pt)")
    p.add_argument("--images", type=int, default=2000, help="LFW images to use")
    p.add_argument("--iterations", type=int, default=2, help="report after 1..N corrections")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--int8", action="store_true", help="run the net as the board does: quantized, int8 kernels")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("measure-detector", help="compare the shipped cascades on LFW scenes and the video; "
                                                "print the box -> canonical frame constants")
    p.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true", help="instead: default cascade under a few speed settings")
    p.set_defaults(func=run_measure)


def run_train(args) -> int:
    from wearface.host_tools.train import train_align as T

    cfg = T.AlignTrainConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             max_per_source=args.max_per_source, sources=tuple(args.sources.split(",")),
                             threads=args.threads, seed=args.seed,
                             perturb=T.Perturbation(narrow_fraction=args.narrow_fraction))
    T.train(cfg, args.out, resume=not args.no_resume)
    return 0


def run_eval(args) -> int:
    from wearface.host_tools.train import align_eval

    align_eval.report(args.data, args.checkpoint, n_images=args.images, iterations=args.iterations, seed=args.seed,
                       int8=args.int8)
    return 0


def run_measure(args) -> int:
    from wearface.host_tools.train import detector_eval

    if args.sweep:
        detector_eval.sweep(args.data, n_images=args.images, seed=args.seed)
    else:
        detector_eval.run(args.data, n_images=args.images, seed=args.seed)
    return 0
