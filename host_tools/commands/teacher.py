"""``wearface teacher``: the dlib distillation teacher's descriptors (cached in a file you name) and its LFW check."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("teacher", help="dlib teacher descriptors for distillation (needs the 'distill' extra)")
    tsub = p.add_subparsers(dest="teacher_verb", metavar="ACTION")
    q = tsub.add_parser("descriptors", help="compute (or resume) the teacher's descriptor of every training face")
    q.add_argument("--data", required=True, help="the shared data folder (celeba/, celeba_more/, video/)")
    q.add_argument("--out", required=True, help="cache file (.npz); resumed if it exists; never commit it")
    q.add_argument("--subsets", default="wild,more,align", help="CelebA subsets (all images, singletons included)")
    q.add_argument("--video", action="append", default=[],
                   help="also the faces of this video (detector + alignment net of BUNDLE); repeatable")
    q.add_argument("--bundle", default="models/default.wfb", help="bundle whose alignment net frames the video faces")
    q.add_argument("--video-stride", type=int, default=3, help="every Nth video frame")
    q.add_argument("--workers", type=int, default=0, help="teacher processes (0: one per CPU)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=run_descriptors)

    q = tsub.add_parser("lfw-check", help="the teacher's own LFW View 2 accuracy through our crops (a subset of pairs)")
    q.add_argument("--lfw", required=True, help="the LFW folder (lfw128.zip, pairs.txt)")
    q.add_argument("--cache", required=True, help="cache file for the LFW descriptors (resumed if it exists)")
    q.add_argument("--per-fold", type=int, default=30,
                   help="the first N matched and N mismatched pairs of each fold (0: all 6,000)")
    q.add_argument("--workers", type=int, default=0)
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=run_lfw_check)


def run_descriptors(args) -> int:
    from wearface.host_tools.train import data as D
    from wearface.host_tools.train import teacher as T

    cache = T.load_cache(args.out, missing_ok=True)
    records = D.load_celeba(args.data, [s for s in args.subsets.split(",") if s])
    items = T.celeba_items(records)
    for video in args.video:
        from wearface.host_tools.train.video_faces import video_face_items

        items += video_face_items(video, args.bundle, stride=args.video_stride, progress=not args.no_progress)
    before = len(cache)
    added = T.compute_descriptors(cache, items, workers=args.workers, progress=not args.no_progress)
    print(f"{args.out}: {len(cache)} descriptors ({before} were cached, {added} computed)")
    return 0


def run_lfw_check(args) -> int:
    from wearface.host_tools.train.teacher_lfw import teacher_lfw_check

    res, n_pairs = teacher_lfw_check(args.lfw, args.cache, per_fold_half=args.per_fold, workers=args.workers,
                                     progress=not args.no_progress)
    print(f"dlib teacher on our 112x112 crops, LFW View 2 ({n_pairs} pairs, the first {args.per_fold} matched and "
          f"mismatched of each fold): {res.summary()}")
    return 0
