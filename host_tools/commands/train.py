"""``wearface train`` / ``wearface eval`` / ``wearface data``: train embedding nets, score them on LFW, pack data."""
from __future__ import annotations

import json

_MB = 1024 * 1024


def register(sub) -> None:
    p = sub.add_parser("train", help="train an embedding net with the multibatch hinge loss")
    p.add_argument("--net", default="A", help="A, B or C (default A)")
    p.add_argument("--data", required=True, help="the shared data folder (with celeba/, celeba_more/, lfw/) or a pack .npz")
    p.add_argument("--out", required=True, help="run folder: history.jsonl, last.pt, best.pt, config.json")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--images", type=int, default=0, help="train on this many images instead (overrides --epochs)")
    p.add_argument("--time-budget-min", type=float, default=0.0,
                   help="fit the whole run (cosine schedule included) into this many minutes, measuring speed as it goes")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--k-per-identity", type=int, default=4, help="images per identity in a P x K batch")
    p.add_argument("--loss", choices=("multibatch", "pairs"), default="multibatch")
    p.add_argument("--weighting", choices=("uniform", "balanced"), default="balanced")
    p.add_argument("--theta", type=float, default=1.0)
    p.add_argument("--learn-theta", action="store_true")
    p.add_argument("--distance-scale", type=float, default=1.0, help="the hinge sees SCALE * distance (see losses.py)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes (0: in the main process)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--ckpt-every", type=int, default=200, help="save last.pt every N steps")
    p.add_argument("--eval-every-steps", type=int, default=0, help="also evaluate and log a history row every N steps")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-batchnorm", action="store_true")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--subsets", default="wild,more,align", help="CelebA subsets (data folder only)")
    p.add_argument("--lfw", default="", help="LFW folder for the dev accuracy (default: <data>/lfw)")
    d = p.add_argument_group("distillation", "from the dlib teacher's cached descriptors (`wearface teacher descriptors`)")
    d.add_argument("--teacher", default="", help="teacher descriptor cache (.npz): adds the distillation loss")
    d.add_argument("--distill-relational", type=float, default=2.0, help="weight of the all-pairs distance-matrix term")
    d.add_argument("--distill-direct", type=float, default=1.0, help="weight of the 1 - cos(student, teacher) term (0: off)")
    d.add_argument("--hinge-weight", type=float, default=1.0, help="weight of the identity hinge (0: distillation only)")
    d.add_argument("--all-faces", action="store_true", help="keep singleton identities in training (drawn as extras)")
    d.add_argument("--extra-per-batch", type=int, default=0, help="images per batch from singletons and video faces")
    d.add_argument("--video", action="append", default=[], help="a video whose faces join training unlabelled (repeatable)")
    d.add_argument("--video-bundle", default="models/default.wfb", help="bundle whose alignment net frames the video faces")
    d.add_argument("--video-stride", type=int, default=3, help="every Nth video frame")
    p.add_argument("--pipeline", choices=("loader", "memory"), default="loader",
                   help="memory: decode every crop once, augment whole batches in torch on the device")
    p.add_argument("--damage", type=float, default=1.0,
                   help="memory pipeline: strength of the camera damage (grey, side light, blur, occlusion...; 0: geometry only)")
    p.add_argument("--select-on", choices=("lfw_dev", "heldout"), default="lfw_dev",
                   help="best.pt by LFW View 1 dev pairs or by held-out CelebA identities (clean + damaged)")
    p.add_argument("--ema-decay", type=float, default=0.0, metavar="D",
                   help="keep an exponential moving average of the weights (decay D per step, e.g. 0.998): "
                        "OUT/ema.pt at every row, scored on the held-out identities beside the weights")
    p.add_argument("--init", default="", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (same net) with a fresh optimizer and schedule: a fine-tune")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)

    p = sub.add_parser("eval", help="LFW View 2 10-fold accuracy, ROC PNG and TAR at FAR 1e-3 of a checkpoint")
    p.add_argument("checkpoint", help="a training checkpoint (best.pt, last.pt) or a shipped model_*.pt")
    p.add_argument("--lfw", required=True, help="the LFW folder (lfw128.zip, pairs.txt) or the data root")
    p.add_argument("--pairs", default="", help="pairs file (default: LFW_FOLDER/pairs.txt)")
    p.add_argument("--roc", default="", help="write the ROC curve to this PNG")
    p.add_argument("--json", default="", help="write the result to this JSON file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--int8", action="store_true",
                   help="quantize the checkpoint (host_tools/train/quantize.py) and embed through the int8 kernels, as the "
                        "board does")
    p.add_argument("--data", default="", help="with --int8: the shared data folder (calibration crops from CelebA)")
    p.add_argument("--calibration", type=int, default=128, help="with --int8: calibration images")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("data", help="inspect the training data or pack it into one small file")
    dsub = p.add_subparsers(dest="data_verb", metavar="ACTION")
    q = dsub.add_parser("pack", help="re-encode the training crops + LFW dev pairs into one .npz under a size limit")
    q.add_argument("out", help="output .npz")
    q.add_argument("--data", required=True, help="the shared data folder")
    q.add_argument("--max-mb", type=float, default=55.0, help="size limit in MiB (default 55)")
    q.add_argument("--subsets", default="wild,more,align")
    q.add_argument("--val-fraction", type=float, default=0.05)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--codec", choices=("webp", "jpeg"), default="webp", help="image codec (webp: ~40%% smaller at 112x112)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=run_data_pack)
    q = dsub.add_parser("stats", help="count images and identities of a data folder or pack")
    q.add_argument("data")
    q.add_argument("--subsets", default="wild,more,align")
    q.set_defaults(func=run_data_stats)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_train(args) -> int:
    from wearface.host_tools.train.train import TrainConfig, Trainer

    cfg = TrainConfig(
        net=args.net, data=args.data, out=args.out, device=args.device, epochs=args.epochs, images=args.images,
        time_budget_s=60.0 * args.time_budget_min,
        batch=args.batch, k_per_identity=args.k_per_identity, loss=args.loss, weighting=args.weighting,
        theta=args.theta, learn_theta=args.learn_theta, distance_scale=args.distance_scale, lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, seed=args.seed, workers=args.workers, threads=args.threads,
        ckpt_every=args.ckpt_every, eval_every_steps=args.eval_every_steps, channels_last=args.channels_last,
        batchnorm=not args.no_batchnorm,
        augment=not args.no_augment, subsets=tuple(args.subsets.split(",")), lfw=args.lfw,
        teacher=args.teacher, distill_relational=args.distill_relational, distill_direct=args.distill_direct,
        hinge_weight=args.hinge_weight, all_faces=args.all_faces, extra_per_batch=args.extra_per_batch,
        video=tuple(args.video), video_bundle=args.video_bundle, video_stride=args.video_stride,
        pipeline=args.pipeline, damage=args.damage, select_on=args.select_on, ema_decay=args.ema_decay,
        init=args.init,
    )
    Trainer(cfg, resume=args.resume, progress=not args.no_progress).run()
    return 0


def run_eval(args) -> int:
    from pathlib import Path

    from wearface.host_tools.train import data as D
    from wearface.host_tools.train import evaluate as E

    lfw_zip, pairs_path, _ = D.lfw_paths(args.lfw)
    pairs = D.read_pairs(args.pairs or pairs_path)
    lfw = D.LfwImages(lfw_zip)
    model, ckpt = E.load_checkpoint_model(args.checkpoint, args.device)
    if args.int8:
        from wearface.host_tools.errors import HostToolError
        from wearface.host_tools.train.quantize import int8_embedder, quantize_checkpoint

        if not args.data:
            raise HostToolError("--int8 needs --data (the shared data folder, for calibration crops)")
        qnet, _ = quantize_checkpoint(args.checkpoint, args.data, count=args.calibration)
        embed, mode = int8_embedder(qnet), f"int8 ({args.calibration} calibration crops)"
    else:
        embed, mode = E.torch_embedder(model, args.device), "float"
    res = E.verify_pairs(embed, pairs, lfw.crop112, progress=not args.no_progress)
    print(f"{args.checkpoint}: model {ckpt['config']['net']} {mode}, LFW {Path(args.pairs or pairs_path).name}: {res.summary()}")
    if args.roc:
        E.save_roc_png(res, args.roc, f"LFW View 2, model {ckpt['config']['net']}: {100 * res.mean:.2f}% ± {100 * res.std:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "mode": mode, "mean": res.mean, "std": res.std,
                                                "folds": res.accuracies.tolist(), "thresholds": res.thresholds.tolist(),
                                                "tar_at_far_1e-3": res.tar_at_far_1e3}, indent=1))
    return 0


def run_data_pack(args) -> int:
    import numpy as np

    from wearface.host_tools.train import data as D

    # the held-out identities are those of the whole data's split (what the trainer and eval-heldout hold out),
    # not a split of the packed subsets alone: a pack of one subset must not train on an identity they report on
    _, held = D.split_by_identity(D.drop_singletons(D.load_celeba(args.data)), args.val_fraction, args.seed)
    records = D.drop_singletons(D.load_celeba(args.data, tuple(args.subsets.split(","))))
    is_val = np.isin(records.identities, np.unique(held.identities))
    train, val = records.subset(np.flatnonzero(~is_val)), records.subset(np.flatnonzero(is_val))
    lfw_zip, _, dev_path = D.lfw_paths(args.data)
    dev = D.read_pairs(dev_path) if dev_path.is_file() else None
    meta = D.write_pack(args.out, train, val, lfw_zip if dev else None, dev, int(args.max_mb * _MB),
                          codec=args.codec, progress=not args.no_progress)
    print(f"{args.out}: {meta['size_bytes'] / _MB:.1f} MiB, {meta['codec']} quality {meta['quality']}, "
          f"train {meta['n_train']} images / {meta['n_train_identities']} identities, "
          f"val {meta['n_val']} / {meta['n_val_identities']}, LFW dev images {meta['lfw_dev_images']}")
    return 0


def run_data_stats(args) -> int:
    import numpy as np

    from wearface.host_tools.train import data as D

    if D.is_pack(args.data):
        pack = D.load_pack(args.data)
        parts = {"train": pack.train, "val": pack.val}
        print(f"pack meta: {json.dumps(pack.meta)}")
    else:
        parts = {"all": D.load_celeba(args.data, tuple(args.subsets.split(",")))}
    for name, r in parts.items():
        ids, counts = np.unique(r.identities, return_counts=True)
        by_subset = {s: r.subsets.count(s) for s in sorted(set(r.subsets))}
        print(f"{name}: {len(r)} images, {len(ids)} identities ({int((counts >= 2).sum())} with 2+), by subset {by_subset}")
    return 0
