"""Training throughput of an embedding net and the share of a step spent in the loss (not a test).

The seed's point: all (k² - k)/2 pairs cost almost nothing beyond embedding the k images.  Measures, on
synthetic input (no data loading), the time of a full step (forward, loss, backward, AdamW update) and of
the loss alone (forward + backward on detached embeddings), for the multibatch and the k/2-pairs loss.

Run: ``python bench/bench_training.py [--net A] [--batch 128] [--steps 20] [--device cpu] [--threads 2]``

With ``--data DIR`` (the shared data folder) it also measures a full training step with real data, median of
``--repeats`` timed runs of ``--steps`` steps each, images/s and the ratio to the synthetic-input step measured
in the same run: the ``loader`` pipeline (JPEG decode + cv2 augmentation per image in ``--workers`` DataLoader
processes) and the ``memory`` pipeline (crops decoded once; camera damage on whole batches in torch).
"""
from __future__ import annotations

import argparse
import time

import torch

from wearface.host_tools.train.losses import MultibatchLoss, PairsLoss
from wearface.host_tools.train.torch_nets import build_torch_net


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
    ap.add_argument("--data", default="", help="shared data folder: also time the real data pipelines")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader processes of the loader pipeline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=4096, help="crops the pipelines draw from (first N of CelebA)")
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
    if args.data:
        real_data_pipelines(args, model, opt)
    return 0


def real_data_pipelines(args, model, opt) -> None:
    """images/s of a full step fed by each real pipeline, against the synthetic-input step (same run)."""
    import statistics

    import numpy as np
    from torch.utils.data import DataLoader

    from wearface.host_tools.train import data as D
    from wearface.host_tools.train.batch_augment import HARD, BatchAugment
    from wearface.host_tools.train.face_tensor import decode_all
    from wearface.host_tools.train.samplers import UniformBatchSampler
    from wearface.host_tools.train.torch_nets import to_input
    from wearface.host_tools.train.train import FaceDataset, SeededBatches

    records = D.load_celeba(args.data)
    records = records.subset(np.arange(min(args.images, len(records))))
    loss_fn = MultibatchLoss(weighting="balanced").to(args.device)
    labels = torch.arange(args.batch, device=args.device) // 4

    def train_on(x):
        loss = loss_fn(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(batches) -> float:
        it = iter(batches)
        train_on(next(it))  # warm-up (and the loader's first fetch)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_on(next(it))
        return args.batch * args.steps / (time.perf_counter() - t0)

    synthetic = torch.rand(args.batch, 3, 112, 112, device=args.device) * 2 - 1

    def synthetic_batches():
        while True:
            yield synthetic

    def loader_batches(rep):
        sampler = UniformBatchSampler(len(records), args.batch, None, seed=rep)
        ds = FaceDataset(records, D.Augment())
        dl = DataLoader(ds, batch_sampler=SeededBatches(sampler, rep), num_workers=args.workers,
                        prefetch_factor=4 if args.workers else None)
        for images, _ in dl:
            yield to_input(images).to(args.device)

    t0 = time.perf_counter()
    crops = torch.from_numpy(decode_all(records, threads=max(1, torch.get_num_threads())))
    decode_s = time.perf_counter() - t0
    augment = BatchAugment(HARD, args.device)

    def memory_batches(rep):
        gen = torch.Generator().manual_seed(rep)
        while True:
            idx = torch.randint(0, len(crops), (args.batch,), generator=gen)
            yield augment(crops[idx], gen)

    rows = {"synthetic input (net only)": lambda r: synthetic_batches(),
            f"loader ({args.workers} workers, cv2 per image)": loader_batches,
            "memory (torch, whole batch, camera damage)": memory_batches}
    rates = {name: statistics.median(timed(make(r)) for r in range(args.repeats)) for name, make in rows.items()}
    base = rates["synthetic input (net only)"]
    print(f"\nreal data: {len(records)} crops (memory pipeline decoded them once in {decode_s:.1f} s); "
          f"median of {args.repeats} runs of {args.steps} steps")
    print(f"  {'pipeline':48s} {'images/s':>9s} {'vs net only':>12s}")
    for name, rate in rates.items():
        print(f"  {name:48s} {rate:9.0f} {rate / base:11.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
