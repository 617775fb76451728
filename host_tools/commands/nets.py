"""``wearface nets``: print the seed's networks layer by layer, ours beside the seed's totals."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("nets", help="print a net's layers, shapes, parameters and MACs")
    p.add_argument("net", nargs="?", default=None, help="align, A, B or C (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from wearface.kernels import nets

    names = [args.net] if args.net else list(nets.NETS)
    for name in names:
        net = nets.get_net(name)
        print(f"net {net.name}: input {net.input_shape}, output {net.output}")
        print(f"  {'layer':<12} {'in':>14} {'out':>14} {'params':>10} {'MACs':>12}")
        for row in nets.iter_counts(net):
            print(f"  {row.layer.name:<12} {str(row.in_shape):>14} {str(row.out_shape):>14} {row.params:>10,} {row.macs:>12,}")
        macs, params = nets.totals(net)
        print(f"  total: {macs / 1e6:.1f}M MACs (seed {net.seed_macs / 1e6:.1f}M), {params / 1e3:.1f}k params (seed "
              f"{net.seed_params / 1e3:.0f}k)\n")
    return 0
