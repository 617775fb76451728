"""What a bundle holds and costs: the report of ``wearface bundle inspect``.

One job: describe a read bundle in lines of text (container sections, signature, manifest, provenance, each
net's MACs, parameters and memory) and predict its latency on board files that carry a speed figure.
Reads with ``firmware/bundle.py``; never writes.
"""
from __future__ import annotations

import math
from pathlib import Path

import tomllib

from wearface.firmware import bundle as fmt
from wearface.firmware.board import boards_dir, load_board
from wearface.kernels import nets
from wearface.kernels import qnet as qn


def board_files(given) -> list[Path]:
    """The board files named (``--board``, repeatable), or every ``boards/*.toml`` when none."""
    if given:
        return [Path(p) for p in given]
    return sorted(boards_dir().glob("*.toml"))


def board_speed_gmac_s(path: Path) -> tuple[float | None, str]:
    """A board file's int8 speed figure (GMAC/s): any numeric key whose name contains "gmac",
    read from the raw TOML (the board schema may not have one).  (None, why) when absent."""
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


def memory_estimate(qnet: qn.QuantizedNet) -> dict:
    """Bytes: int8 weights + int32 vectors; activations as Int8Runtime holds them (one int8 buffer per
    layer output, allocated once) and the least any runtime needs (largest input + output pair)."""
    rows = list(nets.iter_counts(qnet.spec))
    weights = sum(q.weights.nbytes + q.bias.nbytes + q.multiplier.nbytes + q.shift.nbytes
                  for q in qnet.layers if isinstance(q, (qn.QConv, qn.QAffine)))
    sizes = [int(math.prod(r.out_shape)) for r in rows]
    inp = int(math.prod(qnet.spec.input_shape))
    pairs = [inp + sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:])]
    return {"weights": weights, "activations_all": inp + sum(sizes), "activations_min": max(pairs)}


def runs_per_face(b: fmt.Bundle, role: str) -> int:
    """How many times the board runs the net of ``role`` for one face: the embedding net twice for a bundle with
    ``mirror_average`` (the crop and its mirror image), every net else once."""
    return 2 if role == "embed" and b.mirror_average else 1


def board_line(b: fmt.Bundle, path: Path) -> str:
    """One board's line: compatible, trusted key, and the predicted latency of each net (or why none)."""
    rate, why = board_speed_gmac_s(path)
    trust = compat = "?"
    try:
        board = load_board(path)
        compat = "yes" if board.compatible in b.compatible else f"no ({board.compatible})"
        trust = "yes" if b.signed and any(fmt.key_id(k).hex() == b.key_id for k in board.public_keys) else "no"
    except Exception as exc:  # a board file being written by someone else must not break inspect
        compat = f"? ({type(exc).__name__})"
    if rate:
        lat = ", ".join(f"{role} {nets.totals(net.spec)[0] / (rate * 1e9) * 1e3:.2f} ms"
                        + (" x 2 (mirror)" if runs_per_face(b, role) == 2 else "")
                        for role, net in b.nets.items())
        speed = f"predicted {lat} at {rate:g} GMAC/s ({why})"
    else:
        speed = f"latency: {why}"
    return f"  board {path.stem}: compatible {compat}, trusted key {trust}; {speed}"


def inspect_lines(data: bytes, name: str, boards: list[Path], layers: bool = False) -> list[str]:
    """The report of ``wearface bundle inspect``, one string per line.  Raises ``BundleError`` on a bundle
    that cannot be read."""
    b = fmt.read_bundle(data, name)
    m = b.manifest
    c = fmt.parse_container(data, name)
    out = [f"{name}: wearface bundle v{c.version}, {b.size_bytes:,} bytes, sha256 {b.sha256}",
           f"  sections: header {fmt.HEADER_SIZE} B, manifest {c.manifest_size:,} B, tensors {c.tensors_size:,} B, "
           f"trailer {fmt.TRAILER_SIZE} B",
           f"  signature: {'key ' + b.key_id if b.signed else 'UNSIGNED'}",
           f"  model version {b.model_version!r}, rollback counter {b.rollback_counter}, created {m.get('created_at')}",
           f"  compatible: {', '.join(b.compatible)}",
           f"  threshold θ = {b.threshold:.4f} ({b.threshold_metric}: match when {b.rule})",
           f"  embedding space {b.embedding_space}"
           + (" (mirror_average: the crop's and its mirror image's embeddings summed, two embed runs a face)"
              if b.mirror_average else "")]
    golden_bytes = sum(g.image.nbytes + g.output_int8.nbytes + g.output_float.nbytes for g in b.golden)
    out.append(f"  golden vectors: {len(b.golden)} ({', '.join(g.net for g in b.golden)}), {golden_bytes:,} B")
    for term in m.get("data_terms", []):
        out.append(f"  data terms: {term}")
    prov = m.get("provenance", {})
    for role in ("align", "embed"):
        p = prov.get(role)
        if isinstance(p, dict):
            desc = p.get("file") or p.get("kind")
            out.append(f"  provenance {role}: {desc} {('sha256 ' + p['sha256'][:16]) if p.get('sha256') else ''}".rstrip())
            results = p.get("results")
            if isinstance(results, dict) and isinstance(results.get("command"), str):
                out.append(f"  trained {role}: {results['command']}")
                if isinstance(results.get("weights"), str):  # a snapshot of the weights' moving average says so
                    out.append(f"  weights {role}: {results['weights']}")
    total_macs = 0
    mems = {}
    for role, net in b.nets.items():
        macs, params = nets.totals(net.spec)
        total_macs += macs * runs_per_face(b, role)
        mem = mems[role] = memory_estimate(net)
        out.append(f"  net {role}: {net.spec.name} {net.spec.input_shape} -> {nets.output_shape(net.spec)}, "
                   f"{macs / 1e6:.2f}M MACs, {params:,} params, weights {mem['weights'] / 1024:.1f} KiB, "
                   f"activations {mem['activations_all'] / 1024:.1f} KiB as run "
                   f"(min {mem['activations_min'] / 1024:.1f} KiB)")
        if layers:
            for row in nets.iter_counts(net.spec):
                out.append(f"      {row.layer.name:<12} {str(row.in_shape):>14} -> {str(row.out_shape):>14} "
                           f"{row.params:>9,} params {row.macs:>12,} MACs")
    peak = max(mems[r]["activations_all"] for r in mems) + sum(mems[r]["weights"] for r in mems)
    out.append(f"  per face: {total_macs / 1e6:.2f}M MACs; peak model memory ≈ {peak / 1024:.0f} KiB "
               f"(both nets' weights + the larger net's activation buffers; Python and the camera frame not counted)")
    out.extend(board_line(b, path) for path in boards)
    return out
