"""Benchmark (not a test): how often a single changed weight is seen by a bundle's self-test, per layer.

    python3 bench/bench_golden_coverage.py [--bundle models/default.wfb] [--trials 20] [--delta 64] [--seed 1]

For each conv/affine layer of both nets: ``--trials`` times, one random weight moved by ``--delta`` (int8 XOR, so
+-delta), and counted as *seen* by

* ``end-to-end``: the bundle's golden images change the layer's own int8 output (an upper bound on what the
  end-to-end vectors can see: a change must first show in the layer to reach the net's output);
* ``layer probe``: the layer's response to its probe changes (``firmware/golden.py``).

The numpy reference runs the layer on the cached input activations, so this takes seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--delta", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from wearface.firmware import golden
    from wearface.firmware.bundle import read_bundle
    from wearface.kernels import nets, reference
    from wearface.kernels import qnet as qn

    bundle = read_bundle(Path(args.bundle).read_bytes())
    rng = np.random.default_rng(args.seed)
    print(f"{args.bundle}: {len(bundle.golden)} golden images, layer probes "
          f"{'recorded' if bundle.layer_golden else 'not recorded (built before them)'}; one weight ^ {args.delta}")
    print("| net | layer | end-to-end golden images see it | layer probe sees it |")
    print("|---|---|---:|---:|")
    for role, net in bundle.nets.items():
        images = [g.image for g in bundle.golden if g.net == role]
        inputs = []
        for image in images:
            x, ins = reference.input_int8(image), []
            for layer in net.layers:
                ins.append(x)
                x = reference.run_layer(layer, x)
            inputs.append(ins)
        for index, (layer, row) in enumerate(zip(net.layers, nets.iter_counts(net.spec))):
            if not isinstance(layer, (qn.QConv, qn.QAffine)):
                continue
            shape = golden.probe_shape(layer.spec, tuple(row.in_shape))
            probe = golden.layer_probe(role, layer.spec.name, shape, int(layer.input_zero_point))
            probe_digest = golden.layer_response_sha256(layer, probe)
            outs = [reference.run_layer(layer, ins[index]) for ins in inputs]
            seen_e2e = seen_probe = 0
            for _ in range(args.trials):
                w = layer.weights.copy()
                place = tuple(int(rng.integers(0, s)) for s in w.shape)
                w[place] = np.int8(np.int16(w[place]) ^ args.delta)
                changed = dataclasses.replace(layer, weights=w)
                seen_e2e += any(not np.array_equal(reference.run_layer(changed, ins[index]), out)
                                for ins, out in zip(inputs, outs))
                seen_probe += golden.layer_response_sha256(changed, probe) != probe_digest
            print(f"| {role} | {index} {layer.spec.name} | {seen_e2e}/{args.trials} | {seen_probe}/{args.trials} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
