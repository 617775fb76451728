"""``wearface keys new|show``, ``wearface bundle build|sign|inspect|verify``, ``wearface quantize``.

Exit codes (errors become one line on stderr through ``cli.main``):
0 ok; 2 usage; 3 data missing (DataError); 4 key file (KeyFileError); 5 bundle cannot be built
(BundleBuildError); 7 quantization (QuantizeError); 21..31 the bundle was rejected, 20 + ``BundleReason``:
21 BAD_MAGIC, 22 UNSUPPORTED_VERSION, 23 TRUNCATED, 24 BAD_HEADER, 25 HASH_MISMATCH, 26 BAD_SIGNATURE,
27 UNKNOWN_KEY, 28 BAD_MANIFEST, 29 INCOMPATIBLE_BOARD, 30 ROLLBACK, 31 GOLDEN_MISMATCH.
"""
from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from wearface.firmware.gallery import GALLERY_MATCHES
from wearface.host_tools.errors import BundleBuildError, DataError, QuantizeError


def register(sub) -> None:
    keys = sub.add_parser("keys", help="Ed25519 signing keys for model bundles")
    ksub = keys.add_subparsers(dest="keys_verb", metavar="ACTION", required=True)
    p = ksub.add_parser("new", help="generate a key: NAME.pem (private, mode 0600) and NAME.pub (base64)")
    p.add_argument("name", help="path of the private key, e.g. keys/myboard.pem")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=keys_new)
    p = ksub.add_parser("provision", help="write a board file that trusts exactly this public key (a fleet's key)")
    p.add_argument("board", help="board file (.toml), e.g. boards/rpi-zero2w.toml (ships trusting no key)")
    p.add_argument("--key", required=True, help="the fleet's public key: .pub, .pem or base64 text")
    p.add_argument("--out", required=True, help="where to write the provisioned board file (the original is kept)")
    p.set_defaults(func=keys_provision)
    p = ksub.add_parser("show", help="print the base64 public key of a .pem or .pub file (for a board's TOML)")
    p.add_argument("key")
    p.set_defaults(func=keys_show)

    bundle = sub.add_parser("bundle", help="build, sign, inspect and verify model bundles (.wfb)")
    bsub = bundle.add_subparsers(dest="bundle_verb", metavar="ACTION", required=True)

    p = bsub.add_parser("build", help="quantize checkpoints (or random nets) into a bundle",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="the .wfb to write")
    p.add_argument("--align", required=True, help="alignment checkpoint (.pt), or 'random'")
    p.add_argument("--embed", required=True, help="embedding checkpoint (.pt), or 'random'")
    p.add_argument("--net", default="A", help="embedding net for --embed random (A, B, C)")
    p.add_argument("--data", help="shared data folder: CelebA calibration crops (golden inputs are synthetic)")
    p.add_argument("--calibration", type=int, default=128, help="calibration crops per net")
    p.add_argument("--method", default="percentile", help="activation ranges: percentile, mse or minmax")
    p.add_argument("--threshold", type=float, help="match threshold θ (L2 distance); default: the checkpoint's")
    p.add_argument("--compatible", action="append", help="board family (repeat); default: every board in boards/")
    p.add_argument("--model-version", default="dev")
    p.add_argument("--rollback", type=int, default=0, help="anti-rollback counter")
    p.add_argument("--key", help="sign with this private key (.pem); unsigned without it")
    p.add_argument("--golden", type=int, default=2, help="golden vectors per net")
    p.add_argument("--seed", type=int, default=0, help="seed of random nets and of the crop choice")
    p.add_argument("--created-at", help="ISO 8601 time to record (default: now)")
    p.add_argument("--cohort", type=int, metavar="N",
                   help="carry a cohort of N training identities (one image each through the board path; needs --data "
                        "and --threshold, a ratio from `eval-heldout --cohort N`): the board decides on distance / "
                        "the probe's k-th nearest cohort distance")
    p.add_argument("--cohort-k", type=int, metavar="K", help="with --cohort: the k (default 10)")
    p.add_argument("--mirror-average", action="store_true",
                   help="the board embeds a face as its crop's and the mirror image's embeddings averaged (two net "
                        "runs a face; its own embedding space; θ from `eval-heldout` on a bundle built so)")
    p.add_argument("--gallery-match", choices=GALLERY_MATCHES, default=GALLERY_MATCHES[0],
                   help="the distance to an enrolled person: to their nearest embedding, or to their mean embedding "
                        "(θ from `eval-heldout` on a bundle built so)")
    p.add_argument("--threshold-by-count", type=float, action="append", metavar="θ_N",
                   help="repeat: θ for a person with 1, 2, ... enrolment images, the last for more (each from "
                        "`eval-heldout --per-person N`); default: --threshold for everyone")
    p.set_defaults(func=bundle_build)

    p = bsub.add_parser("rebuild", help="replay the build arguments a bundle records and compare the bytes "
                                        "(reproducible bundles)")
    p.add_argument("bundle", help="a bundle built by `bundle build` (its manifest records the arguments)")
    p.add_argument("-o", "--output", required=True, help="where to write the rebuilt bundle")
    p.add_argument("--key", help="sign with this private key (.pem), as the original was (deterministic Ed25519)")
    p.add_argument("--data", help="the shared data folder (calibration crops; needed when the bundle came from checkpoints)")
    p.set_defaults(func=bundle_rebuild)

    p = bsub.add_parser("sign", help="sign (or re-sign) a bundle")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="Ed25519 private key (.pem)")
    p.add_argument("-o", "--output", help="default: overwrite the input")
    p.set_defaults(func=bundle_sign)

    p = bsub.add_parser("inspect", help="print a bundle's nets, sizes, MACs, threshold, latency and memory")
    p.add_argument("bundle")
    p.add_argument("--board", action="append", help="board TOML for latency and trust (repeat; default: boards/*.toml)")
    p.add_argument("--layers", action="store_true", help="also print every layer")
    p.set_defaults(func=bundle_inspect)

    p = bsub.add_parser("verify", help="check a bundle as a board would at boot")
    p.add_argument("bundle")
    p.add_argument("--board", help="board TOML: its keys and compatible family (default: boards/virtual.toml)")
    p.add_argument("--key", action="append", help="trusted public key (.pub, .pem or base64) instead of the board's")
    p.add_argument("--compatible", help="board family instead of the board's")
    p.add_argument("--min-rollback", type=int, default=0)
    p.add_argument("--no-self-test", action="store_true", help="skip the golden vectors")
    p.set_defaults(func=bundle_verify)

    p = bsub.add_parser("lfw", help="LFW View 2 accuracy of a bundle's int8 embedding net, and at its θ")
    p.add_argument("bundle")
    p.add_argument("--data", required=True, help="shared data folder (lfw/pairs.txt, lfw/lfw128.zip)")
    p.add_argument("--lfw-stride", type=int, default=1, help="keep every n-th pair (quick look)")
    p.set_defaults(func=bundle_lfw)

    p = bsub.add_parser("tflite", help="export a bundle's nets as .tflite and compare them in LiteRT")
    p.add_argument("bundle")
    p.add_argument("-o", "--out", default=".", help="folder for <bundle>.align.tflite and <bundle>.embed.tflite")
    p.add_argument("--no-compare", action="store_true", help="only write the files")
    p.set_defaults(func=bundle_tflite)

    p = sub.add_parser("quantize", help="PTQ a checkpoint; per-layer drift report; LFW float vs int8",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="shared data folder (CelebA calibration crops, LFW)")
    p.add_argument("--method", default="percentile", help="percentile, mse or minmax; or a comma list to compare")
    p.add_argument("--calibration", type=int, default=128, help="calibration crops")
    p.add_argument("--drift-images", type=int, default=16, help="held-out crops for the drift report")
    p.add_argument("--out", default="runs/quantize", help="folder for drift.md, drift.png, lfw.json")
    p.add_argument("--lfw", action="store_true", help="LFW View 2 accuracy, float checkpoint vs int8 runtime")
    p.add_argument("--lfw-stride", type=int, default=1, help="keep every n-th LFW pair (quick look)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=quantize)


# --- keys ----------------------------------------------------------------------------------------
# The wings import numba (firmware/bundle.py) or torch (train/): each verb imports what it calls, so that
# ``wearface --help`` and the other verbs stay quick.

def keys_new(args) -> int:
    from wearface.host_tools.bundle import keys

    private, public = keys.write_keypair(args.name, force=args.force)
    print(f"wrote {private} (private: keep it off the repository) and {public}")
    print(f"public_key = \"{public.read_text().strip()}\"   # for the board's TOML")
    return 0


def keys_provision(args) -> int:
    from wearface.host_tools.bundle import keys

    out = keys.provision_board_file(args.board, args.key, args.out)
    print(f"wrote {out}: {args.board} trusting only {args.key}; start the board with it (firmware --board {out})")
    return 0


def keys_show(args) -> int:
    from wearface.host_tools.bundle import keys

    print(base64.b64encode(keys.load_public_key(args.key)).decode("ascii"))
    return 0


# --- bundle --------------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _net_from_arg(role: str, arg: str, args, spec_name: str):
    """(QuantizedNet, provenance dict, FloatNet or None) for ``--align``/``--embed``."""
    from wearface.host_tools.bundle import bundle_build, provenance
    from wearface.host_tools.train import quantize as Q
    from wearface.kernels import nets

    if arg == "random":
        seed = args.seed + (1 if role == "embed" else 0)
        return bundle_build.random_qnet(nets.get_net(spec_name), seed), provenance.random_net(seed), None
    if not args.data:
        raise BundleBuildError(f"--{role} {arg}: a checkpoint needs --data (calibration crops)")
    fnet = Q.load_float_net(arg)
    images = Q.calibration_images(args.data, fnet.spec, args.calibration, args.seed)
    qnet = Q.quantize_float_net(fnet, images, args.method)
    prov = provenance.checkpoint_net(arg, fnet.checkpoint, fnet.spec.name, args.method, len(images),
                                     f"celeba {Q.CALIBRATION_SOURCE}")
    return qnet, prov, fnet


def bundle_build(args) -> int:
    from wearface.host_tools.bundle.one_thread import one_thread

    # one thread: the same bytes on any core count (bundle/one_thread.py)
    with one_thread():
        return _bundle_build(args)


def _bundle_build(args) -> int:
    from wearface.host_tools.bundle import bundle_build as bb
    from wearface.host_tools.bundle import provenance

    align, align_prov, _ = _net_from_arg("align", args.align, args, "align")
    embed, embed_prov, embed_fnet = _net_from_arg("embed", args.embed, args, args.net)
    threshold = args.threshold
    if threshold is None:
        threshold = provenance.checkpoint_threshold(None if embed_fnet is None else embed_fnet.checkpoint)
    if threshold is None:
        if args.embed != "random":
            raise BundleBuildError(f"{args.embed}: no threshold stored in the checkpoint; pass --threshold")
        threshold = 1.1
    if args.cohort is not None or args.cohort_k is not None:
        k = 10 if args.cohort_k is None else args.cohort_k
        if args.cohort is None or not 1 <= k <= args.cohort or not args.data or args.threshold is None:
            raise BundleBuildError(f"--cohort {args.cohort} --cohort-k {args.cohort_k}: a cohort needs N >= k >= 1, "
                                   "--data (its faces) and --threshold (a ratio, from `eval-heldout --cohort N`)")
    golden = bb.golden_inputs(align, embed, args.golden, args.seed)
    # what the build used, recorded as arguments (defaults resolved) so that `bundle rebuild` can replay it
    used = dict(vars(args), threshold=float(threshold), compatible=args.compatible or list(bb.DEFAULT_COMPATIBLE),
                created_at=args.created_at or bb.utc_now(),
                # the default is not recorded: bundles built before the option rebuild to their bytes
                gallery_match=None if args.gallery_match == "nearest" else args.gallery_match)
    prov = provenance.bundle_provenance(align_prov, embed_prov, provenance.build_args(used))
    data = bb.build_bundle(align, embed, threshold, used["compatible"], args.model_version, args.rollback, prov,
                           golden, created_at=used["created_at"], mirror_average=args.mirror_average,
                           gallery_match=args.gallery_match, threshold_by_count=args.threshold_by_count)
    if args.cohort:
        from wearface.firmware.board import boards_dir
        from wearface.host_tools.train.board_path_eval import board_path_cohort

        # the cohort is embedded by this bundle's own nets, so it is built twice; the nets do not change
        cohort = board_path_cohort(data, boards_dir() / "virtual.toml", args.data, args.cohort, seed=args.seed)
        data = bb.build_bundle(align, embed, threshold, used["compatible"], args.model_version, args.rollback, prov,
                               golden, created_at=used["created_at"], cohort=cohort,
                               cohort_k=10 if args.cohort_k is None else args.cohort_k,
                               mirror_average=args.mirror_average, gallery_match=args.gallery_match,
                               threshold_by_count=args.threshold_by_count)
    if args.key:
        data = bb.sign_bundle(data, args.key)
    bb.write_bytes_atomic(args.output, data)
    print(f"wrote {args.output}: {len(data):,} bytes, {'signed' if args.key else 'UNSIGNED'}, θ = {threshold:.4f}")
    return 0


def bundle_rebuild(args) -> int:
    """Exit 0 when the rebuilt bytes equal the bundle's, 1 when they differ (naming the manifest keys and
    sections that differ)."""
    import hashlib

    from wearface.firmware.bundle import read_bundle
    from wearface.host_tools.cli import build_parser

    original = _read(args.bundle)
    manifest = read_bundle(original, args.bundle).manifest
    recorded = (manifest.get("provenance") or {}).get("build_args")
    if not isinstance(recorded, list) or not all(isinstance(a, str) for a in recorded):
        raise DataError(f"{args.bundle}: records no build arguments (built before 0.2.1, or not by `bundle build`)")
    argv = ["bundle", "build", "-o", args.output, *recorded]
    if args.data:
        argv += ["--data", args.data]
    if args.key:
        argv += ["--key", args.key]
    print("wearface " + " ".join(argv))
    rebuilt_args = build_parser().parse_args(argv)
    bundle_build(rebuilt_args)
    rebuilt = _read(args.output)
    digest = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    if rebuilt == original:
        print(f"identical: {args.output} = {args.bundle} (sha256 {digest(original)})")
        return 0
    other = read_bundle(rebuilt, args.output).manifest
    keys = sorted(k for k in set(manifest) | set(other) if manifest.get(k) != other.get(k))
    print(f"DIFFERENT: {args.bundle} sha256 {digest(original)[:16]}, {args.output} sha256 {digest(rebuilt)[:16]}; "
          f"manifest keys that differ: {', '.join(keys) or 'none'}" + ("" if args.key else " (rebuilt unsigned: pass --key)"))
    return 1


def bundle_sign(args) -> int:
    from wearface.firmware.bundle import key_id
    from wearface.host_tools.bundle import bundle_build as bb
    from wearface.host_tools.bundle import keys

    data = bb.sign_bundle(_read(args.bundle), keys.load_private_key(args.key))
    out = args.output or args.bundle
    bb.write_bytes_atomic(out, data)
    print(f"signed {out} with key {key_id(keys.public_raw(keys.load_private_key(args.key))).hex()}")
    return 0


def bundle_inspect(args) -> int:
    from wearface.host_tools.bundle import bundle_inspect as bi

    data = _read(args.bundle)
    for line in bi.inspect_lines(data, args.bundle, bi.board_files(args.board), layers=args.layers):
        print(line)
    return 0


def bundle_verify(args) -> int:
    from wearface.firmware import bundle as fmt
    from wearface.firmware.board import boards_dir, load_board
    from wearface.host_tools.bundle import keys

    keys_list, compatible = [], args.compatible
    if args.key:
        keys_list = [keys.load_public_key(k) for k in args.key]
    if not args.key or not compatible:
        board = load_board(args.board or boards_dir() / "virtual.toml")
        keys_list = keys_list or list(board.public_keys)
        compatible = compatible or board.compatible
    b = fmt.verify_bundle(_read(args.bundle), keys_list, compatible, args.min_rollback,
                          self_test=not args.no_self_test, name=args.bundle)
    tested = "not run" if args.no_self_test else f"{len(b.golden)} golden vectors exact"
    print(f"{args.bundle}: OK for {compatible}: signed by {b.key_id}, model {b.model_version!r}, "
          f"rollback {b.rollback_counter}, self-test {tested}")
    return 0


def bundle_lfw(args) -> int:
    from wearface.firmware import bundle as fmt
    from wearface.host_tools.train import quantize as Q

    b = fmt.read_bundle(_read(args.bundle), args.bundle)
    r = Q.lfw_int8(b.embed_net, args.data, pair_stride=args.lfw_stride)
    print(f"{args.bundle} ({b.model_version}): LFW View 2 int8 {r.summary()}")
    if b.cohort is not None:  # θ bounds distance / the probe's k-th cohort distance, not the distance scored here
        print(f"the bundle's θ = {b.threshold:.4f} bounds the cohort score (metric {b.threshold_metric}), not a "
              f"distance: `wearface eval-board` reports what it accepts on LFW")
    else:
        print(f"at the bundle's θ = {b.threshold:.4f}: {100 * Q.accuracy_at(r, b.threshold):.2f}% of {len(r.dist)} "
              f"pairs right (θ fixed, not re-fit per fold)")
    return 0


def bundle_tflite(args) -> int:
    from wearface.firmware import bundle as fmt
    from wearface.host_tools.bundle import tflite_export as T

    b = fmt.read_bundle(_read(args.bundle), args.bundle)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for role, net in b.nets.items():
        data, report = T.export_tflite(net)
        path = out / f"{Path(args.bundle).stem}.{role}.tflite"
        path.write_bytes(data)
        notes = "; ".join(report.notes) or f"all {report.channels} channel multipliers exact"
        print(f"wrote {path}: {len(data):,} bytes ({notes})")
        if args.no_compare:
            continue
        for line in T.compare_with_litert(data, net, [g.image for g in b.golden if g.net == role]):
            print(line)
    return 0


# --- quantize ------------------------------------------------------------------------------------

def quantize(args) -> int:
    from wearface.host_tools.train import quantize as Q

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods:
        raise QuantizeError(f"--method {args.method!r}: expected e.g. percentile or percentile,mse,minmax")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fnet = Q.load_float_net(args.checkpoint)
    images = Q.calibration_images(args.data, fnet.spec, args.calibration, args.seed)
    held_out = Q.calibration_images(args.data, fnet.spec, args.drift_images, args.seed, offset=args.calibration)
    qnets = {}
    for method in methods:
        qnets[method] = Q.quantize_float_net(fnet, images, method)
        stem = "drift" if len(methods) == 1 else f"drift_{method}"
        print(Q.write_drift_report(fnet, qnets[method], images, held_out, method, Path(args.checkpoint).name, out, stem))
    if args.lfw:
        res = Q.lfw_float_vs_int8(fnet, qnets if len(qnets) > 1 else qnets[methods[0]], args.data,
                                  pair_stride=args.lfw_stride, progress=True)
        for k, r in res.items():
            delta = "" if k == "float" else f" ({100 * (r.mean - res['float'].mean):+.2f} points vs float)"
            print(f"LFW View 2 {k}: {r.summary()}{delta}")
        summary = Q.lfw_summary(res, Path(args.checkpoint).name, len(images))
        (out / "lfw.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {out / 'lfw.json'}")
    return 0
