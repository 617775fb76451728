"""Training throughput of an embedding net and the share of a step spent in the loss (not a test).

The seed's point: all (k² - k)/2 pairs cost almost nothing beyond embedding the k images.  Measures, on
synthetic input (no data loading), the time of a full step (forward, loss, backward, AdamW update) and of
the loss alone (forward + backward on detached embeddings), for the multibatch and the k/2-pairs loss.

Run: ``python bench/bench_training.py [--net A] [--batch 128] [--steps 20] [--device cpu] [--threads 2]``
"""
from __future__ import annotations

import argparse
import time

import torch

from wearface.host_tools.losses import MultibatchLoss, PairsLoss
from wearface.host_tools.torch_nets import build_torch_net


def _time(fn, steps: int, device: str) -> float:
    for _ in range(2):  # warm-up (allocator, cuDNN autotuning)
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="A")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_torch_net(args.net).to(args.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, 112, 112, device=args.device) * 2 - 1
    labels = torch.arange(args.batch, device=args.device) // 4  # P x K layout, K = 4
    print(f"net {args.net}, batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}")
    for name, loss_fn in (("multibatch", MultibatchLoss(weighting="balanced")), ("pairs", PairsLoss(weighting="balanced"))):
        loss_fn = loss_fn.to(args.device)

        def step():
            loss = loss_fn(model(x), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        with torch.no_grad():
            emb0 = model(x).detach()

        def loss_only():
            emb = emb0.clone().requires_grad_(True)
            loss_fn(emb, labels).backward()

        t_step, t_loss = _time(step, args.steps, args.device), _time(loss_only, args.steps * 5, args.device)
        n_pairs = args.batch * (args.batch - 1) // 2 if name == "multibatch" else args.batch // 2
        print(f"  {name:10s}: step {1e3 * t_step:8.1f} ms = {args.batch / t_step:7.0f} images/s; loss fwd+bwd "
              f"{1e3 * t_loss:6.2f} ms = {100 * t_loss / t_step:.2f}% of a step ({n_pairs} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
