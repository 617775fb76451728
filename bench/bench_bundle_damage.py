"""Benchmark (not a test): damaged bundles through the board's own ``verify_bundle``; none may be accepted.

Builds one signed test bundle (random nets, the dev key, compatible with the virtual board), checks that it is
accepted, then damages it ``--trials`` times, each time one of:

* ``bit``: one bit flipped at a random byte (half the draws in the header and manifest's first 4 KiB, where a
  parser would trip, half anywhere);
* ``bits``: 2-64 bits flipped at random bytes;
* ``truncate``: cut at a random length;
* ``extend``: 1-4096 random bytes appended;
* ``zero``: a random run of 1-4096 bytes set to zero (a flash page that was never written);
* ``splice``: a random run of bytes replaced by the same run from elsewhere in the file (a misplaced page);
* ``header``: a random field of the first 64 bytes overwritten with random bytes;
* ``foreign``: the bundle re-signed with a key the board does not trust, or left unsigned.

Each damaged copy goes through ``verify_bundle`` (structure, SHA-256, signature, manifest, board, rollback,
golden self-test).  Counts: rejected with ``BundleError`` (by reason), **accepted** (must be 0), **other
exceptions** (a crash: must be 0); time per verification (median, max), ms.  The damaged bytes are never equal to
the original (a draw that changes nothing is drawn again).

    python3 bench/bench_bundle_damage.py [--trials 10000] [--seed 0] [--bundle models/default.wfb]

Exit status 1 when any damaged bundle was accepted or raised something other than ``BundleError``.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

import numpy as np

KINDS = ("bit", "bits", "truncate", "extend", "zero", "splice", "header", "foreign")


def damage(original: bytes, kind: str, rng: np.random.Generator, foreign: tuple) -> bytes:
    """One damaged copy of ``original``; ``foreign``: (the same bundle unsigned, signed with an untrusted key)."""
    n = len(original)
    buf = bytearray(original)
    if kind == "bit":
        position = int(rng.integers(0, min(n, 4096))) if rng.random() < 0.5 else int(rng.integers(0, n))
        buf[position] ^= 1 << int(rng.integers(0, 8))
    elif kind == "bits":
        for position in rng.integers(0, n, int(rng.integers(2, 65))):
            buf[int(position)] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        return bytes(buf[: int(rng.integers(0, n))])
    elif kind == "extend":
        return bytes(buf) + rng.integers(0, 256, int(rng.integers(1, 4097)), dtype=np.uint8).tobytes()
    elif kind == "zero":
        start = int(rng.integers(0, n))
        buf[start: start + int(rng.integers(1, 4097))] = bytes(min(n - start, len(buf[start: start + 4096])))
    elif kind == "splice":
        length = int(rng.integers(1, 4097))
        src, dst = (int(v) for v in rng.integers(0, max(n - length, 1), 2))
        buf[dst: dst + length] = original[src: src + length]
    elif kind == "header":
        start = int(rng.integers(0, 64))
        length = int(rng.integers(1, 9))
        buf[start: start + length] = rng.integers(0, 256, len(buf[start: start + length]), dtype=np.uint8).tobytes()
    elif kind == "foreign":
        return foreign[int(rng.integers(0, 2))]
    else:
        raise ValueError(kind)
    return bytes(buf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", help="a signed bundle file to damage (default: a test bundle of random nets)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be >= 1, got {args.trials}")

    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from wearface.firmware.board import boards_dir, load_board
    from wearface.firmware.bundle import verify_bundle
    from wearface.firmware.errors import BundleError
    from wearface.host_tools.bundle.bundle_build import build_test_bundle, sign_bundle

    board = load_board(boards_dir() / "virtual.toml")
    keys, compatible = list(board.public_keys), board.compatible
    original = Path(args.bundle).read_bytes() if args.bundle else build_test_bundle(seed=args.seed)
    verify_bundle(original, keys, compatible)  # the undamaged bundle is accepted, or the bench means nothing
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        foreign_key = Path(tmp) / "foreign.pem"
        foreign_key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        # 'foreign': unsigned (the test bundle) or signed by an untrusted key
        foreign = (sign_bundle(original, foreign_key),) * 2
        if not args.bundle:
            foreign = (build_test_bundle(seed=args.seed, key_path=None), foreign[0])
        reasons: collections.Counter = collections.Counter()
        per_kind: collections.Counter = collections.Counter()
        accepted, crashes, times = [], [], []
        t_all = time.perf_counter()
        for trial in range(args.trials):
            kind = KINDS[trial % len(KINDS)]
            damaged = damage(original, kind, rng, foreign)
            while damaged == original:
                damaged = damage(original, kind, rng, foreign)
            per_kind[kind] += 1
            t0 = time.perf_counter()
            try:
                verify_bundle(damaged, keys, compatible)
                accepted.append((trial, kind))
            except BundleError as e:
                reasons[e.reason.name] += 1
            except Exception as e:  # noqa: BLE001 - what this bench counts
                crashes.append((trial, kind, f"{type(e).__name__}: {e}"))
            times.append((time.perf_counter() - t0) * 1e3)
        wall = time.perf_counter() - t_all
    what = args.bundle or "test nets"
    print(f"bundle of {len(original):,} bytes ({what}, seed {args.seed}); {args.trials:,} damaged copies in "
          f"{wall:.0f} s ({', '.join(f'{k} {v}' for k, v in per_kind.items())})")
    print()
    print("| damaged bundles | rejected (BundleError) | accepted | other exceptions | median ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.trials:,} | {sum(reasons.values()):,} | {len(accepted)} | {len(crashes)} | "
          f"{statistics.median(times):.2f} | {max(times):.1f} |")
    print()
    print("rejections by reason: " + ", ".join(f"{k} {v:,}" for k, v in reasons.most_common()))
    for what, items in (("ACCEPTED", accepted), ("CRASHED", crashes)):
        for item in items[:10]:
            print(f"{what}: {item}")
    return 1 if accepted or crashes else 0


if __name__ == "__main__":
    sys.exit(main())
