"""Training end to end on a tiny synthetic pack: a few steps lower the loss, resume equals an uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wearface.host_tools.errors import HostToolError
from wearface.host_tools.train import data as D
from wearface.host_tools.train import evaluate as E
from wearface.host_tools.train.losses import MultibatchLoss
from wearface.host_tools.train.torch_nets import build_torch_net, to_input
from wearface.host_tools.train.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[3]


def _synthetic_records(n_ids=8, per_id=4, seed=0):
    """Identity = a colour and a bar position, plus noise: easy to tell apart."""
    rng = np.random.default_rng(seed)
    imgs, ids = [], []
    for i in range(n_ids):
        colour = rng.integers(0, 256, size=3)
        for _ in range(per_id):
            img = np.clip(colour + rng.normal(0, 20, size=(112, 112, 3)), 0, 255).astype(np.uint8)
            img[:, 10 * i : 10 * i + 8] = 255
            imgs.append(img)
            ids.append(100 + i)
    return imgs, np.array(ids)


def _pack(tmp_path):
    imgs, ids = _synthetic_records()
    rec = D.FaceRecords(identities=ids, celeba_files=[f"{k:06d}.jpg" for k in range(len(ids))], subsets=["syn"] * len(ids),
                        landmarks=np.full((len(ids), 5, 2), np.nan, np.float32),
                        jpeg=[D.encode_jpeg_rgb(im, 95) for im in imgs])
    train, val = rec.subset(np.arange(24)), rec.subset(np.arange(24, 32))
    path = tmp_path / "syn.npz"
    D.write_pack(path, train, val, None, None, max_bytes=10 * 2**20, progress=False)
    return path


def test_pack_round_trip_keeps_labels_and_images(tmp_path):
    pack = D.load_pack(_pack(tmp_path))
    assert len(pack.train) == 24 and len(pack.val) == 8
    assert pack.train.decode(0).shape == (112, 112, 3)
    assert sorted(set(pack.val.identities.tolist())) == [106, 107]


def test_a_few_steps_on_a_fixed_batch_lower_the_multibatch_loss():
    torch.manual_seed(0)
    imgs, ids = _synthetic_records(4, 2)
    model = build_torch_net("A")
    loss_fn = MultibatchLoss(weighting="balanced")
    losses = adam_steps(model, loss_fn, to_input(np.stack(imgs)), torch.as_tensor(ids), 4)
    assert losses[-1] < losses[0]


def adam_steps(model, loss_fn, x, target, steps: int, lr: float = 1e-3) -> list[float]:
    """``steps`` Adam steps on ``loss_fn(model(x), target)`` over one fixed batch; the loss before each step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.slow
def test_trainer_runs_and_resume_matches_an_uninterrupted_run(tmp_path):
    pack = _pack(tmp_path)
    common = dict(net="A", data=str(pack), batch=8, k_per_identity=2, images=32, workers=0, warmup_steps=1, ckpt_every=2,
                  val_batches=1, seed=3)
    straight = Trainer(TrainConfig(out=str(tmp_path / "a"), **common), progress=False, log=lambda *_: None)
    rows = straight.run()
    assert rows[-1]["step"] == 4 and (tmp_path / "a" / "last.pt").is_file()
    assert json.loads((tmp_path / "a" / "history.jsonl").read_text().splitlines()[-1])["images_seen"] == 32

    first = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), progress=False, log=lambda *_: None)
    first.run(stop_after_steps=2)  # mid-epoch (3 steps per epoch)
    resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), resume=True, progress=False, log=lambda *_: None)
    assert resumed.step == 2
    resumed.run()
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


@pytest.mark.slow
def test_memory_pipeline_resumes_exactly_and_selects_on_held_out_identities(tmp_path):
    pack = _pack(tmp_path)
    common = dict(net="A", data=str(pack), batch=8, k_per_identity=2, images=32, workers=0, warmup_steps=1, ckpt_every=2,
                  val_batches=1, seed=3, pipeline="memory", damage=1.0, select_on="heldout")
    straight = Trainer(TrainConfig(out=str(tmp_path / "a"), **common), progress=False, log=lambda *_: None)
    rows = straight.run()
    assert {"heldout_acc", "heldout_hard_acc", "heldout_tar"} <= set(rows[-1])
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=False)
    assert "optimizer" not in best
    assert best["best_dev"] == pytest.approx(max(0.5 * (r["heldout_acc"] + r["heldout_hard_acc"]) for r in rows))

    first = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), progress=False, log=lambda *_: None)
    first.run(stop_after_steps=2)
    resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), resume=True, progress=False, log=lambda *_: None)
    resumed.run()
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_the_weight_average_is_scored_written_and_resumed_exactly(tmp_path):
    pack = _pack(tmp_path)
    common = dict(net="A", data=str(pack), batch=8, k_per_identity=2, images=48, workers=0, warmup_steps=1, ckpt_every=2,
                  val_batches=1, seed=3, pipeline="memory", damage=0.0, select_on="heldout", ema_decay=0.5,
                  eval_every_steps=3)
    straight = Trainer(TrainConfig(out=str(tmp_path / "a"), **common), progress=False, log=lambda *_: None)
    rows = straight.run()
    assert {"ema_heldout_acc", "ema_heldout_hard_acc", "ema_heldout_tar"} <= set(rows[-1])
    ema = torch.load(tmp_path / "a" / "ema.pt", weights_only=False)
    assert "optimizer" not in ema and "ema" not in ema and ema["ema_decay"] == 0.5 and ema["step"] == rows[-1]["step"]
    weights = straight.model.state_dict()
    assert ema["model"].keys() == weights.keys()
    assert any(not torch.equal(ema["model"][k], weights[k]) for k in weights)  # an average, not the weights
    model, _ = E.load_checkpoint_model(tmp_path / "a" / "ema.pt")  # loads as any checkpoint does (bundle build)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ema["model"].values()))
    # the shippable snapshot of it: the average's weights and how they were trained
    import importlib.util

    spec = importlib.util.spec_from_file_location("snapshot", REPO / "scripts" / "snapshot_checkpoint.py")
    snapshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot)
    assert snapshot.main(["--ema", str(tmp_path / "a"), str(tmp_path / "snap.pt")]) == 0
    snap = torch.load(tmp_path / "snap.pt", weights_only=False)
    assert all(torch.equal(snap["model"][k], ema["model"][k]) for k in weights)
    assert snap["extra"]["weights"].startswith("moving average") and snap["extra"]["history"][-1]["step"] == rows[-1]["step"]
    assert f"--net {ema['config']['net']} " in snap["extra"]["command"]  # the command of this net's run

    first = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), progress=False, log=lambda *_: None)
    first.run(stop_after_steps=2)
    resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), **common), resume=True, progress=False, log=lambda *_: None)
    resumed.run()
    for (k, a), b in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k
    with pytest.raises(HostToolError, match="ema-decay"):
        Trainer(TrainConfig(out=str(tmp_path / "c"), **dict(common, ema_decay=1.5)), progress=False, log=lambda *_: None)


def test_eval_every_steps_logs_rows_every_n_steps_and_at_the_end_never_per_epoch(tmp_path):
    # on a GPU an epoch of a small set takes seconds and an evaluation tens of seconds: per-epoch rows on top of
    # --eval-every-steps spent most of a lent machine's minutes evaluating (measured: 25 s of 387 s training)
    pack = _pack(tmp_path)  # 24 train images: 3 steps of 8 per epoch
    cfg = TrainConfig(out=str(tmp_path / "run"), net="A", data=str(pack), batch=8, k_per_identity=2, images=64, workers=0,
                      warmup_steps=1, val_batches=1, seed=3, eval_every_steps=4)
    rows = Trainer(cfg, progress=False, log=lambda *_: None).run()
    assert [r["step"] for r in rows] == [4, 8]
    assert rows[0]["images_seen"] == 32 and rows[1]["images_seen"] == 64


def test_init_starts_from_a_checkpoints_weights_with_a_fresh_schedule(tmp_path):
    pack = _pack(tmp_path)
    common = dict(data=str(pack), batch=8, k_per_identity=2, images=16, workers=0, warmup_steps=1, ckpt_every=2,
                  val_batches=1, seed=3)
    Trainer(TrainConfig(net="A", out=str(tmp_path / "a"), **common), progress=False, log=lambda *_: None).run()
    source = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    tuned = Trainer(TrainConfig(net="A", out=str(tmp_path / "b"), init=str(tmp_path / "a" / "last.pt"), **common),
                    progress=False, log=lambda *_: None)
    assert tuned.step == 0 and tuned.scheduler.last_epoch == 0  # a new schedule, not a resume
    for k, v in source["model"].items():
        assert torch.equal(tuned.model.state_dict()[k], v), k
    fresh = Trainer(TrainConfig(net="A", out=str(tmp_path / "c"), **common), progress=False, log=lambda *_: None)
    assert any(not torch.equal(fresh.model.state_dict()[k], v) for k, v in source["model"].items())
    tuned.run()  # and it trains on from there
    assert tuned.step == 2
    with pytest.raises(HostToolError, match="model-A checkpoint, but this run trains model B"):
        Trainer(TrainConfig(net="B", out=str(tmp_path / "d"), init=str(tmp_path / "a" / "last.pt"), **common),
                progress=False, log=lambda *_: None)
    with pytest.raises(HostToolError, match="checkpoint missing"):
        Trainer(TrainConfig(net="A", out=str(tmp_path / "e"), init=str(tmp_path / "nope.pt"), **common),
                progress=False, log=lambda *_: None)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HostToolError, match="not a wearface checkpoint"):
        Trainer(TrainConfig(net="A", out=str(tmp_path / "f"), init=str(tmp_path / "junk.pt"), **common),
                progress=False, log=lambda *_: None)
