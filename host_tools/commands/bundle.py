"""``wearface keys new|show``, ``wearface bundle build|sign|inspect|verify``, ``wearface quantize``.

Exit codes (errors become one line on stderr through ``cli.main``):
0 ok; 2 usage; 3 data missing (DataError); 4 key file (KeyFileError); 5 bundle cannot be built
(BundleBuildError); 7 quantization (QuantizeError); 21..31 the bundle was rejected, 20 + ``BundleReason``:
21 BAD_MAGIC, 22 UNSUPPORTED_VERSION, 23 TRUNCATED, 24 BAD_HEADER, 25 HASH_MISMATCH, 26 BAD_SIGNATURE,
27 UNKNOWN_KEY, 28 BAD_MANIFEST, 29 INCOMPATIBLE_BOARD, 30 ROLLBACK, 31 GOLDEN_MISMATCH.
"""
from __future__ import annotations

import argparse
from pathlib import Path


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
    p.set_defaults(func=bundle_build)

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
    import base64

    from wearface.host_tools.bundle import keys

    print(base64.b64encode(keys.load_public_key(args.key)).decode("ascii"))
    return 0


# --- bundle --------------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    from wearface.host_tools.errors import DataError

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _sha256_file(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _net_from_arg(role: str, arg: str, args, spec_name: str):
    """(QuantizedNet, provenance dict, FloatNet or None) for ``--align``/``--embed``."""
    from wearface.host_tools.bundle import bundle_build
    from wearface.host_tools.errors import BundleBuildError
    from wearface.host_tools.train import quantize as Q
    from wearface.kernels import nets

    if arg == "random":
        seed = args.seed + (1 if role == "embed" else 0)
        return bundle_build.random_qnet(nets.get_net(spec_name), seed), {"kind": "random", "seed": seed}, None
    if not args.data:
        raise BundleBuildError(f"--{role} {arg}: a checkpoint needs --data (calibration crops)")
    fnet = Q.load_float_net(arg)
    images = Q.calibration_images(args.data, fnet.spec, args.calibration, args.seed)
    qnet = Q.quantize_float_net(fnet, images, args.method)
    config = fnet.checkpoint.get("config", {})
    prov = {
        "kind": "checkpoint", "file": Path(arg).name, "sha256": _sha256_file(arg), "net": fnet.spec.name,
        "train_config": {k: config[k] for k in sorted(config) if isinstance(config[k], (str, int, float, bool))},
        "step": fnet.checkpoint.get("step"),
        "calibration": {"method": args.method, "images": len(images), "source": f"celeba {Q.CALIBRATION_SOURCE}"},
    }
    extra = fnet.checkpoint.get("extra")
    if isinstance(extra, dict):
        from wearface.host_tools.bundle.bundle_build import _jsonable

        prov["results"] = _jsonable(extra)
    return qnet, prov, fnet


def _checkpoint_threshold(fnet) -> float | None:
    if fnet is None:
        return None
    ckpt = fnet.checkpoint
    for holder in (ckpt.get("extra") or {}, ckpt):
        for key in ("threshold", "lfw_threshold", "theta"):
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, (int, float)):
                return float(value)
    return None


def bundle_build(args) -> int:
    from wearface.host_tools.bundle import bundle_build as bb
    from wearface.host_tools.errors import BundleBuildError

    align, align_prov, _ = _net_from_arg("align", args.align, args, "align")
    embed, embed_prov, embed_fnet = _net_from_arg("embed", args.embed, args, args.net)
    threshold = args.threshold if args.threshold is not None else _checkpoint_threshold(embed_fnet)
    if threshold is None:
        if args.embed != "random":
            raise BundleBuildError(f"{args.embed}: no threshold stored in the checkpoint; pass --threshold")
        threshold = 1.1
    # golden inputs are synthetic (smooth noise in the face range), never crops of the shared data:
    # a bundle is committed and shipped, and images derived from the data must not be
    from wearface.kernels.ptq import random_images

    golden = {role: random_images(net.spec.input_shape, args.golden, args.seed + 7 + i)
              for i, (role, net) in enumerate((("align", align), ("embed", embed)))}
    provenance = {"align": align_prov, "embed": embed_prov, "git_commit": _git_commit(),
                  "tool": "wearface bundle build"}
    if "checkpoint" in (align_prov["kind"], embed_prov["kind"]):
        provenance["datasets"] = ["celeba (training, calibration)"]
    data = bb.build_bundle(align, embed, threshold, args.compatible or list(bb.DEFAULT_COMPATIBLE),
                           args.model_version, args.rollback, provenance, golden, created_at=args.created_at)
    if args.key:
        data = bb.sign_bundle(data, args.key)
    bb.write_bytes_atomic(args.output, data)
    print(f"wrote {args.output}: {len(data):,} bytes, {'signed' if args.key else 'UNSIGNED'}, θ = {threshold:.4f}")
    return 0


def bundle_sign(args) -> int:
    from wearface.host_tools.bundle import bundle_build as bb
    from wearface.host_tools.bundle import keys

    data = bb.sign_bundle(_read(args.bundle), keys.load_private_key(args.key))
    out = args.output or args.bundle
    bb.write_bytes_atomic(out, data)
    from wearface.firmware.bundle import key_id

    print(f"signed {out} with key {key_id(keys.public_raw(keys.load_private_key(args.key))).hex()}")
    return 0


def _board_files(given) -> list[Path]:
    if given:
        return [Path(p) for p in given]
    from wearface.firmware.board import boards_dir

    return sorted(boards_dir().glob("*.toml"))


def board_speed_gmac_s(path: Path) -> tuple[float | None, str]:
    """A board file's int8 speed figure (GMAC/s): any numeric key whose name contains "gmac",
    read from the raw TOML (the board schema may not have one).  (None, why) when absent."""
    import tomllib

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, f"unreadable ({exc})"
    found = []

    def walk(obj, prefix):
        for k, v in obj.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif "gmac" in k.lower() and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                found.append((f"{prefix}{k}", float(v)))

    walk(table, "")
    if not found:
        return None, "no speed figure (a key like cpu.int8_gmac_per_s)"
    key, value = found[0]
    return value, key


def memory_estimate(qnet) -> dict:
    """Bytes: int8 weights + int32 vectors; activations as Int8Runtime holds them (one int8 buffer per
    layer output, allocated once) and the least any runtime needs (largest input + output pair)."""
    from wearface.kernels import nets
    from wearface.kernels import qnet as qn

    rows = list(nets.iter_counts(qnet.spec))
    weights = sum(q.weights.nbytes + q.bias.nbytes + q.multiplier.nbytes + q.shift.nbytes
                  for q in qnet.layers if isinstance(q, (qn.QConv, qn.QAffine)))
    sizes = [int(__import__("math").prod(r.out_shape)) for r in rows]
    inp = int(__import__("math").prod(qnet.spec.input_shape))
    pairs = [inp + sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:])]
    return {"weights": weights, "activations_all": inp + sum(sizes), "activations_min": max(pairs)}


def bundle_inspect(args) -> int:
    from wearface.firmware import bundle as fmt
    from wearface.kernels import nets

    data = _read(args.bundle)
    b = fmt.read_bundle(data, args.bundle)
    m = b.manifest
    c = fmt.parse_container(data, args.bundle)
    print(f"{args.bundle}: wearface bundle v{c.version}, {b.size_bytes:,} bytes, sha256 {b.sha256}")
    print(f"  sections: header {fmt.HEADER_SIZE} B, manifest {c.manifest_size:,} B, tensors {c.tensors_size:,} B, "
          f"trailer {fmt.TRAILER_SIZE} B")
    print(f"  signature: {'key ' + b.key_id if b.signed else 'UNSIGNED'}")
    print(f"  model version {b.model_version!r}, rollback counter {b.rollback_counter}, created {m.get('created_at')}")
    print(f"  compatible: {', '.join(b.compatible)}")
    print(f"  threshold θ = {b.threshold:.4f} ({b.threshold_metric}: match when distance < θ)")
    print(f"  embedding space {b.embedding_space}")
    golden_bytes = sum(g.image.nbytes + g.output_int8.nbytes + g.output_float.nbytes for g in b.golden)
    print(f"  golden vectors: {len(b.golden)} ({', '.join(g.net for g in b.golden)}), {golden_bytes:,} B")
    for term in m.get("data_terms", []):
        print(f"  data terms: {term}")
    prov = m.get("provenance", {})
    for role in ("align", "embed"):
        p = prov.get(role)
        if isinstance(p, dict):
            desc = p.get("file") or p.get("kind")
            print(f"  provenance {role}: {desc} {('sha256 ' + p['sha256'][:16]) if p.get('sha256') else ''}".rstrip())
            results = p.get("results")
            if isinstance(results, dict) and isinstance(results.get("command"), str):
                print(f"  trained {role}: {results['command']}")
    total_macs = 0
    mems = {}
    for role, net in b.nets.items():
        macs, params = nets.totals(net.spec)
        total_macs += macs
        mem = mems[role] = memory_estimate(net)
        print(f"  net {role}: {net.spec.name} {net.spec.input_shape} -> {nets.output_shape(net.spec)}, "
              f"{macs / 1e6:.2f}M MACs, {params:,} params, weights {mem['weights'] / 1024:.1f} KiB, "
              f"activations {mem['activations_all'] / 1024:.1f} KiB as run (min {mem['activations_min'] / 1024:.1f} KiB)")
        if args.layers:
            for row in nets.iter_counts(net.spec):
                print(f"      {row.layer.name:<12} {str(row.in_shape):>14} -> {str(row.out_shape):>14} "
                      f"{row.params:>9,} params {row.macs:>12,} MACs")
    peak = max(mems[r]["activations_all"] for r in mems) + sum(mems[r]["weights"] for r in mems)
    print(f"  per face: {total_macs / 1e6:.2f}M MACs; peak model memory ≈ {peak / 1024:.0f} KiB "
          f"(both nets' weights + the larger net's activation buffers; Python and the camera frame not counted)")
    for path in _board_files(args.board):
        rate, why = board_speed_gmac_s(path)
        trust = compat = "?"
        try:
            from wearface.firmware.board import load_board

            board = load_board(path)
            compat = "yes" if board.compatible in b.compatible else f"no ({board.compatible})"
            trust = "yes" if b.signed and any(fmt.key_id(k).hex() == b.key_id for k in board.public_keys) else "no"
        except Exception as exc:  # a board file being written by someone else must not break inspect
            compat = f"? ({type(exc).__name__})"
        if rate:
            lat = ", ".join(f"{role} {nets.totals(net.spec)[0] / (rate * 1e9) * 1e3:.2f} ms"
                            for role, net in b.nets.items())
            speed = f"predicted {lat} at {rate:g} GMAC/s ({why})"
        else:
            speed = f"latency: {why}"
        print(f"  board {path.stem}: compatible {compat}, trusted key {trust}; {speed}")
    return 0


def bundle_verify(args) -> int:
    from wearface.firmware import bundle as fmt
    from wearface.host_tools.bundle import keys

    keys_list, compatible = [], args.compatible
    if args.key:
        keys_list = [keys.load_public_key(k) for k in args.key]
    if not args.key or not compatible:
        from wearface.firmware.board import boards_dir, load_board

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
    import numpy as np

    from wearface.firmware import bundle as fmt
    from wearface.host_tools.train import quantize as Q

    b = fmt.read_bundle(_read(args.bundle), args.bundle)
    r = Q.lfw_int8(b.embed_net, args.data, pair_stride=args.lfw_stride)
    fixed = float(np.mean((r.dist < b.threshold) == r.same))
    print(f"{args.bundle} ({b.model_version}): LFW View 2 int8 {r.summary()}")
    print(f"at the bundle's θ = {b.threshold:.4f}: {100 * fixed:.2f}% of {len(r.dist)} pairs right "
          f"(θ fixed, not re-fit per fold)")
    return 0


def bundle_tflite(args) -> int:
    import numpy as np

    from wearface.firmware import bundle as fmt
    from wearface.host_tools.bundle import tflite_export as T
    from wearface.kernels.runtime import Int8Runtime

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
        images = [g.image for g in b.golden if g.net == role]
        ours = [Int8Runtime(net).run_int8(im).reshape(-1).astype(np.int32) for im in images]
        for resolver in T.RESOLVERS:
            interp = T.load_interpreter(data, resolver)
            if interp is None:
                print("  LiteRT is not installed (pip install 'wearface[litert]'): no comparison")
                break
            diffs = [np.abs(o - T.run_interpreter(interp, im).astype(np.int32)) for o, im in zip(ours, images)]
            worst = max(int(d.max()) for d in diffs)
            count = sum(int((d > 0).sum()) for d in diffs)
            print(f"  LiteRT {resolver:<9}: {len(images)} golden inputs, max |diff| {worst} LSB, "
                  f"{count} of {sum(d.size for d in diffs)} outputs differ")
    return 0


# --- quantize ------------------------------------------------------------------------------------

def quantize(args) -> int:
    import json

    from wearface.host_tools.errors import QuantizeError
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
        qnet = qnets[method] = Q.quantize_float_net(fnet, images, method)
        rows = Q.layer_drift(fnet, qnet, held_out)
        table = Q.drift_table(rows)
        title = (f"{Path(args.checkpoint).name}: net {fnet.spec.name}, {method} on {len(images)} crops, "
                 f"{len(held_out)} held-out crops")
        err = Q.output_error(fnet, qnet, held_out)
        if fnet.spec.output == "regression":
            parts = ", ".join(f"{m:.5f} (max {x:.5f})" for m, x in zip(err["abs_diff_mean"], err["abs_diff_max"]))
            line = (f"final outputs |float - int8| per component (align: dx, dy in frame widths, angle in rad), "
                    f"mean (max): {parts}")
        else:
            line = f"embedding L2 distance float vs int8: mean {err['l2_mean']:.4f}, max {err['l2_max']:.4f}"
        stem = "drift" if len(methods) == 1 else f"drift_{method}"
        (out / f"{stem}.md").write_text(f"{title}\n\n{table}\n\n{line}\n")
        Q.save_drift_png(rows, out / f"{stem}.png", title)
        print(f"{title}\n{table}\n{line}\nwrote {out / (stem + '.md')} and {out / (stem + '.png')}")
    if args.lfw:
        res = Q.lfw_float_vs_int8(fnet, qnets if len(qnets) > 1 else qnets[methods[0]], args.data,
                                  pair_stride=args.lfw_stride, progress=True)
        summary = {k: {"accuracy_mean": r.mean, "accuracy_std": r.std, "tar_at_far_1e3": r.tar_at_far_1e3,
                       "threshold_mean": float(r.thresholds.mean()), "pairs": int(len(r.dist))}
                   for k, r in res.items()}
        for k, r in res.items():
            delta = "" if k == "float" else f" ({100 * (r.mean - res['float'].mean):+.2f} points vs float)"
            print(f"LFW View 2 {k}: {r.summary()}{delta}")
        summary["checkpoint"] = Path(args.checkpoint).name
        summary["calibration_images"] = len(images)
        (out / "lfw.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {out / 'lfw.json'}")
    return 0
