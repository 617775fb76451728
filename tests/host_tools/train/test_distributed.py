"""Distributed multibatch: 2 CPU processes (gloo) with all-gathered embeddings give the single-process loss and
gradients on the concatenated batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wearface.host_tools.train.losses import GlobalBatchLoss, MultibatchLoss
from wearface.host_tools.train.torch_nets import build_torch_net

WORLD = 2


def _batch():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 3, 112, 112, generator=g) * 2 - 1).double()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    return x, labels


def _model():
    torch.manual_seed(0)
    # float64: at random init the embeddings nearly coincide, and float32 summation order alone moves the
    # first layers' gradients by ~1%; BatchNorm off: its batch statistics are per rank on CPU (no SyncBN)
    return build_torch_net("A", batchnorm=False).double()


def _worker(rank: int, init_file: str, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        loss_fn = GlobalBatchLoss(MultibatchLoss(weighting="balanced"))
        x, labels = _batch()
        n = x.shape[0] // WORLD
        mine = slice(rank * n, (rank + 1) * n)
        loss = loss_fn(model(x[mine]), labels[mine])
        loss.backward()
        if rank == 0:
            queue.put((float(loss.detach()), {k: p.grad.numpy().copy() for k, p in model.module.named_parameters()}))
        # both ranks leave their last collective before either tears the group down: without it gloo's
        # teardown can race the other rank's pending work and abort it (seen once in CI: SIGABRT, exit -6)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    model = _model()
    x, labels = _batch()
    loss = MultibatchLoss(weighting="balanced")(model(x), labels)
    loss.backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "init"), queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    dist_loss, grads = queue.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert dist_loss == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, p in model.named_parameters():
        ref = p.grad.numpy()
        np.testing.assert_allclose(grads[name], ref, rtol=1e-7, atol=1e-9 * float(np.abs(ref).max()), err_msg=name)
