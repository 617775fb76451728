"""``wearface eval-heldout``: a bundle on held-out CelebA identities through the board path, at the board's decision.

θ is chosen on one half of the held-out identities (the *tune* half: the largest θ that names at most
``--strangers`` of its strangers) and every figure is reported on the other half; LFW plays no part.
``--cohort N`` measures the cohort-normalised rule instead of the board's (``heldout`` module docstring): N training
identities, one image each through the same board path, are the cohort; θ then bounds distance / cohort distance.
"""
from __future__ import annotations

import json

from wearface.firmware.gallery import GALLERY_MATCHES
from wearface.host_tools.errors import DataError


def register(sub) -> None:
    p = sub.add_parser("eval-heldout", help="a bundle on held-out CelebA identities (clean and damaged): verification, "
                                            "open set at the board's decision, θ from a tune half")
    p.add_argument("bundle", help="a signed bundle (.wfb)")
    p.add_argument("--data", required=True, help="the shared data folder (celeba/, celeba_more/)")
    p.add_argument("--board", default="", help="board file (default: boards/virtual.toml)")
    p.add_argument("--people", type=int, default=40, help="enrolled people in each simulated gallery (default 40)")
    p.add_argument("--per-person", type=int, nargs="+", default=[3], metavar="N",
                   help="enrolment images per person (default 3); several: each gallery shape in turn, the held-out "
                        "faces embedded once")
    p.add_argument("--strangers", type=float, default=0.01, help="stranger share θ may name on the tune half (default 0.01)")
    p.add_argument("--theta", type=float, nargs="+", default=[0.0], metavar="θ",
                   help="report at this θ instead of choosing one (0: choose); one for every --per-person, or one for all")
    p.add_argument("--identities", type=int, default=0, help="only the first N held-out identities (quick runs)")
    p.add_argument("--exclude-trained-on", default="", metavar="PACK",
                   help="leave out held-out identities this data pack (.npz) trains on (packs made before 0.2.1 split "
                        "their own subsets, so a model trained on one may have seen some held-out identities)")
    p.add_argument("--cohort", type=int, default=0, metavar="N",
                   help="decide with the cohort-normalised rule, the cohort being N training identities (0: the "
                        "board's rule, distance < θ)")
    p.add_argument("--cohort-k", type=int, default=10, help="the cohort distance is the probe's k-th nearest (default 10)")
    p.add_argument("--gallery-match", choices=GALLERY_MATCHES, default="",
                   help="the distance to an enrolled person: to their nearest image or their mean embedding "
                        "(default: the bundle's own)")
    p.add_argument("--json", default="", help="write the figures to this JSON file (several --per-person: under "
                                              "\"by_per_person\", keyed by N)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from wearface.firmware.board import boards_dir
    from wearface.host_tools.train.board_path_eval import heldout_board_path

    board = args.board or str(boards_dir() / "virtual.toml")
    exclude = ()
    if args.exclude_trained_on:
        from wearface.host_tools.train import data as D

        exclude = set(D.load_pack(args.exclude_trained_on).train.identities.tolist())
    if args.cohort < 0 or args.cohort_k < 1 or (args.cohort and args.cohort_k > args.cohort):
        raise DataError(f"eval-heldout: --cohort {args.cohort} --cohort-k {args.cohort_k}: need a cohort >= 0 "
                         "and 1 <= k <= the cohort")
    counts, thetas = args.per_person, args.theta
    if len(thetas) not in (1, len(counts)):
        raise DataError(f"eval-heldout: {len(thetas)} --theta values for {len(counts)} --per-person values "
                        "(give one for each, or one for all)")
    if min(counts) < 1 or min(thetas) < 0:
        raise DataError(f"eval-heldout: --per-person {counts} --theta {thetas}: need counts >= 1 and θ >= 0")
    thetas = thetas * len(counts) if len(thetas) == 1 else thetas
    hb = heldout_board_path(args.bundle, board, args.data, identities=args.identities, exclude=exclude,
                            progress=not args.no_progress, cohort=args.cohort)
    from pathlib import Path

    from wearface.firmware.bundle import read_bundle
    from wearface.host_tools.train import heldout as H

    carried = read_bundle(Path(args.bundle).read_bytes(), args.bundle)
    _, report = H.tune_report_split(hb.identities)
    # pair verification does not depend on the gallery shape: once for all shapes
    verified = {name: H.verification(emb[report], hb.identities[report]) for name, emb in (("clean", hb.clean),
                                                                                             ("damaged", hb.hard))}
    shapes = [_one_gallery_shape(args, hb, carried, verified, n, theta) for n, theta in zip(counts, thetas)]
    if args.json:
        figures = shapes[0] if len(shapes) == 1 else {
            "bundle": args.bundle, "by_per_person": {str(n): f for n, f in zip(counts, shapes)}}
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)
    return 0


def _one_gallery_shape(args, hb, carried, verified: dict, per_person: int, theta: float) -> dict:
    """θ (given, or chosen on the tune half) and the report half's figures for galleries of ``args.people`` people
    with ``per_person`` enrolment images each (``verified``: the report half's pair verification, clean and
    damaged); printed, and returned for the JSON file."""
    from wearface.firmware.bundle import decision_rule
    from wearface.host_tools.train import heldout as H

    tune, report = H.tune_report_split(hb.identities)
    gallery = dict(people=args.people, per_person=per_person)
    if args.cohort:
        gallery.update(cohort=hb.cohort, cohort_k=args.cohort_k)
    elif carried.cohort is not None:  # the bundle's own rule: its cohort, its k
        gallery.update(cohort=carried.cohort, cohort_k=carried.cohort_k)
    gallery_match = args.gallery_match or carried.gallery_match
    gallery.update(gallery_match=gallery_match)
    # θ from the tune half: the smaller of the clean and the damaged choice, so the decision holds on both
    given = theta > 0
    theta = theta or min(H.choose_theta(emb[tune], hb.identities[tune], args.strangers, **gallery)
                         for emb in (hb.clean, hb.hard))
    figures = {"bundle": args.bundle, "theta": theta, "per_person": per_person, "gallery_match": gallery_match,
               "theta_from": "given" if given else
               f"tune half of the held-out identities, strangers named <= {args.strangers}",
               "excluded_identities_trained_on": args.exclude_trained_on or None,
               "rule": "cohort-normalised: " + decision_rule(len(hb.cohort), args.cohort_k, "training identities")
                       if args.cohort else "cohort-normalised (the bundle's): " + carried.rule
                       if carried.cohort is not None else "board: " + carried.rule,
               "identities": int(len(set(hb.identities.tolist()))),
               "undetected": {"clean": hb.undetected_clean, "hard": hb.undetected_hard, "of": len(hb.identities)}}
    print(f"{args.bundle}: rule {figures['rule']}; the distance to a person: "
          + ("to their mean embedding" if gallery_match == "mean" else "to their nearest enrolment image"))
    print(f"{args.people} people x {per_person} enrolment images; θ = {theta:.4f} ({figures['theta_from']}); "
          f"detector misses: clean {hb.undetected_clean}, damaged {hb.undetected_hard} of {len(hb.identities)} "
          "(their known frame used)")
    print(f"{'report half':<10} {'verif. acc':>10} {'TAR@1e-3':>9} {'strangers named':>16} {'named right':>12} "
          f"{'named wrong':>12}")
    for name, emb in (("clean", hb.clean), ("damaged", hb.hard)):
        v = verified[name]
        o = H.open_set(emb[report], hb.identities[report], theta, **gallery)
        figures[name] = {"verification": v.as_dict(), "open_set": o.as_dict()}
        print(f"{name:<10} {100 * v.balanced_accuracy:>9.2f}% {100 * v.tar_at_far_1e3:>8.2f}% {100 * o.strangers_named:>15.2f}% "
              f"{100 * o.named_correctly:>11.2f}% {100 * o.named_wrongly:>11.2f}%")
    return figures
