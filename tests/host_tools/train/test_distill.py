"""Distillation: the relational loss, the teacher descriptor cache (resume, bad files), mixed batches, training."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearface.host_tools.errors import DataError, HostToolError
from wearface.host_tools.train import data as D
from wearface.host_tools.train import teacher as T
from wearface.host_tools.train.losses import DistillationLoss
from wearface.host_tools.train.samplers import MixedBatchSampler, PKBatchSampler
from wearface.host_tools.train.train import TrainConfig, Trainer

from .test_train_smoke import _pack, _synthetic_records, adam_steps


def _unit(x):
    return torch.nn.functional.normalize(x, dim=1)


# ------------------------------------------------------------------------------------------------ loss
def test_distillation_loss_is_zero_when_the_student_is_the_teacher():
    t = _unit(torch.randn(16, 128, generator=torch.Generator().manual_seed(0)))
    assert float(DistillationLoss(2.0, 1.0)(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)


def test_relational_term_ignores_a_rotation_the_direct_term_does_not():
    g = torch.Generator().manual_seed(1)
    t = _unit(torch.randn(16, 128, generator=g))
    q, _ = torch.linalg.qr(torch.randn(128, 128, generator=g))  # orthogonal: distances kept, directions not
    s = t @ q
    assert float(DistillationLoss(relational=1.0, direct=0.0)(s, t)) == pytest.approx(0.0, abs=1e-5)
    assert float(DistillationLoss(relational=0.0, direct=1.0)(s, t)) > 0.5


def test_relational_term_is_the_mean_squared_all_pairs_distance_error():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ds = np.array([np.sqrt(2), 2.0, np.sqrt(2)])  # pairs (0,1), (0,2), (1,2)
    dt = np.array([0.0, np.sqrt(2), np.sqrt(2)])
    want = 3.0 * np.mean((ds - dt) ** 2)
    assert float(DistillationLoss(relational=3.0, direct=0.0)(s, t)) == pytest.approx(want, rel=1e-5)


def test_distillation_loss_rejects_bad_weights_and_shapes():
    with pytest.raises(HostToolError, match="weights"):
        DistillationLoss(0.0, 0.0)
    with pytest.raises(HostToolError, match="matching"):
        DistillationLoss()(torch.zeros(4, 8), torch.zeros(4, 16))


def test_gradient_steps_on_the_relational_loss_bring_the_student_to_the_teacher():
    g = torch.Generator().manual_seed(2)
    t = _unit(torch.randn(12, 16, generator=g))
    raw = torch.randn(12, 16, generator=g, requires_grad=True)
    loss_fn = DistillationLoss(relational=2.0, direct=0.0)
    opt = torch.optim.Adam([raw], lr=0.05)
    first = None
    for _ in range(200):
        loss = loss_fn(_unit(raw), t)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first


# ----------------------------------------------------------------------------------------------- cache
class _FakeTeacher:
    """Deterministic stand-in for dlib: a fixed random projection of the image's mean colour and layout."""

    calls = 0

    def __init__(self):
        self.w = np.random.default_rng(0).normal(size=(3 * 16, 128)).astype(np.float32)

    def __call__(self, rgb):
        _FakeTeacher.calls += 1
        small = rgb.reshape(4, 28, 4, 28, 3).mean(axis=(1, 3)).reshape(-1)[: 3 * 16]
        return (small / 255.0) @ self.w


def _items(n, seed=0):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8) for _ in range(n)]
    return [(f"celeba:{i:06d}.jpg", (lambda im=im: im)) for i, im in enumerate(imgs)]


def test_cache_round_trip_and_resume_computes_only_what_is_missing(tmp_path):
    path = tmp_path / "t.npz"
    items = _items(10)
    cache = T.load_cache(path, missing_ok=True)
    assert T.compute_descriptors(cache, items[:6], workers=1, progress=False, teacher_factory=_FakeTeacher) == 6
    again = T.load_cache(path)
    assert len(again) == 6
    _FakeTeacher.calls = 0
    assert T.compute_descriptors(again, items, workers=1, progress=False, teacher_factory=_FakeTeacher) == 4
    assert _FakeTeacher.calls == 4
    full = T.load_cache(path)
    desc, found = full.lookup([k for k, _ in items] + ["celeba:nope.jpg"])
    assert found.tolist() == [True] * 10 + [False]
    want = np.stack([_FakeTeacher()(f()) for _, f in items])
    np.testing.assert_allclose(desc[:10], want, rtol=1e-6)
    assert np.isnan(desc[10]).all()


def test_cache_with_two_worker_processes_matches_one(tmp_path):
    items = _items(40, seed=3)
    one, two = T.new_cache(tmp_path / "1.npz"), T.new_cache(tmp_path / "2.npz")
    T.compute_descriptors(one, items, workers=1, chunk=8, progress=False, teacher_factory=_FakeTeacher)
    T.compute_descriptors(two, items, workers=2, chunk=8, progress=False, teacher_factory=_FakeTeacher)
    np.testing.assert_array_equal(one.lookup([k for k, _ in items])[0], two.lookup([k for k, _ in items])[0])


def test_a_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="wearface teacher descriptors"):
        T.load_cache(tmp_path / "none.npz")


def _valid_cache_bytes(tmp_path) -> bytes:
    cache = T.new_cache(tmp_path / "v.npz")
    cache.add(["celeba:a.jpg", "celeba:b.jpg"], np.ones((2, 128), np.float32))
    cache.save()
    return (tmp_path / "v.npz").read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_caches_raise_data_error_only(tmp_path, data):
    good = _valid_cache_bytes(tmp_path)
    kind = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        blob = good[: data.draw(st.integers(0, len(good) - 1))]
    elif kind == "flip":
        pos = data.draw(st.integers(0, len(good) - 1))
        blob = good[:pos] + bytes([good[pos] ^ data.draw(st.integers(1, 255))]) + good[pos + 1 :]
    else:
        blob = data.draw(st.binary(max_size=300))
    path = tmp_path / "bad.npz"
    path.write_bytes(blob)
    try:
        cache = T.load_cache(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    # a flipped byte can land in padding or a descriptor's low bits: then the cache must still be well-formed
    assert cache.descriptors.shape == (len(cache), 128) and np.isfinite(cache.descriptors).all()


@pytest.mark.parametrize("change, match", [
    (dict(descriptors=np.zeros((2, 64), np.float32)), "descriptors must be"),
    (dict(descriptors=np.full((2, 128), np.nan, np.float32)), "NaN"),
    (dict(keys=np.array([b"a", b"a"])), "duplicate"),
    (dict(meta=np.frombuffer(json.dumps({"version": 99}).encode(), np.uint8)), "version 99"),
])
def test_well_formed_npz_with_wrong_content_is_rejected(tmp_path, change, match):
    arrays = dict(keys=np.array([b"a", b"b"]), descriptors=np.zeros((2, 128), np.float32),
                  meta=np.frombuffer(json.dumps({"version": T.CACHE_VERSION}).encode(), np.uint8))
    arrays.update(change)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = tmp_path / "c.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=match):
        T.load_cache(path)


# --------------------------------------------------------------------------------------------- sampler
def test_mixed_batches_add_pool_images_and_pk_never_draws_negative_labels():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, -1, -1, 4])  # 3: singleton, 4: singleton, -1: no label
    pool = np.array([8, 9, 10, 11])
    pk = PKBatchSampler(labels, p=2, k=2, n_batches=20, seed=0)
    mixed = MixedBatchSampler(pk, pool, extra=3, seed=0)
    mixed.set_epoch(1)
    batches = list(mixed)
    assert len(batches) == 20
    for b in batches:
        assert len(b) == 7
        assert all(labels[i] in (0, 1, 2) for i in b[:4])
        assert all(i in pool for i in b[4:])
    mixed.set_epoch(1)
    assert list(mixed) == batches


# -------------------------------------------------------------------------------------------- training
def test_training_with_a_teacher_runs_and_names_missing_descriptors(tmp_path):
    path = _pack(tmp_path)
    pack = D.load_pack(path)
    teacher_path = tmp_path / "teacher.npz"
    cache = T.new_cache(teacher_path)
    every = [pack.train, pack.val]
    T.compute_descriptors(cache, [it for r in every for it in T.celeba_items(r)], workers=1, progress=False,
                          teacher_factory=_FakeTeacher)
    cfg = TrainConfig(net="A", data=str(path), out=str(tmp_path / "run"), images=32, batch=8, k_per_identity=2,
                      workers=0, val_batches=1, ckpt_every=0, teacher=str(teacher_path), distill_relational=2.0,
                      distill_direct=1.0, augment=False)
    history = Trainer(cfg, progress=False).run()
    assert history and np.isfinite(history[-1]["train_loss"])

    # every training image needs its teacher descriptor; the error names the first that lacks one
    partial = T.new_cache(tmp_path / "partial.npz")
    T.compute_descriptors(partial, T.celeba_items(pack.train)[1:], workers=1, progress=False, teacher_factory=_FakeTeacher)
    cfg2 = TrainConfig(**{**cfg.__dict__, "teacher": str(tmp_path / "partial.npz"), "out": str(tmp_path / "run2")})
    with pytest.raises(HostToolError, match=r"1 of 24 training images .*celeba:000000\.jpg"):
        Trainer(cfg2, progress=False)


def test_distillation_alone_moves_the_student_toward_the_teacher_geometry(tmp_path):
    torch.manual_seed(0)
    imgs, ids = _synthetic_records(6, 4)
    teacher = _FakeTeacher()
    t = _unit(torch.as_tensor(np.stack([teacher(im) for im in imgs])))
    from wearface.host_tools.train.torch_nets import build_torch_net, to_input

    losses = adam_steps(build_torch_net("A"), DistillationLoss(2.0, 0.0), to_input(np.stack(imgs)), t, 6)
    assert losses[-1] < losses[0]


def test_video_faces_without_a_teacher_are_refused(tmp_path):
    cfg = TrainConfig(net="A", data=str(_pack(tmp_path)), out=str(tmp_path / "r"), images=16, batch=16, workers=0,
                      video=("clip.mp4",))
    with pytest.raises(HostToolError, match="need --teacher"):
        Trainer(cfg, progress=False)


def test_uniform_batches_are_full_distinct_and_cover_every_image():
    from wearface.host_tools.train.samplers import UniformBatchSampler

    s = UniformBatchSampler(10, 4, n_batches=10, seed=0)
    s.set_epoch(2)
    batches = list(s)
    assert all(len(b) == 4 and len(set(b)) == 4 for b in batches)
    assert set().union(*map(set, batches)) == set(range(10))
    assert list(s) == batches
    with pytest.raises(HostToolError, match="at least 4"):
        UniformBatchSampler(3, 4)


def test_ablation_rows_differ_only_where_they_say():
    import argparse

    from experiments import distill_ablation as A

    args = argparse.Namespace(net="A", data="d", out="o", device="cpu", images=1000, batch=128, theta=5.0,
                              distance_scale=4.0, lr=2e-3, seed=0, workers=1, threads=2, eval_every=0, teacher="t.npz",
                              extra_per_batch=10, video=["v.mp4"], video_bundle="b.wfb")
    cfgs = {name: A.row_config(name, args).__dict__ for name in A.ROWS}
    assert cfgs["pairs"]["loss"] == "pairs" and not cfgs["pairs"]["teacher"]
    assert cfgs["+distill"]["teacher"] == "t.npz" and not cfgs["+distill"]["all_faces"]
    every = cfgs["+distill (every face)"]
    assert every["all_faces"] and every["extra_per_batch"] == 10 and every["video"] == ("v.mp4",)
    assert cfgs["distill only"]["hinge_weight"] == 0.0
    assert abs(cfgs["+distill (hinge in teacher units)"]["distance_scale"] - 40 / 3) < 1e-9
    same = ("net", "data", "images", "batch", "lr", "seed", "augment", "batchnorm", "k_per_identity")
    assert all(len({str(c[k]) for c in cfgs.values()}) == 1 for k in same)
    assert len({str(A.row_dir(__import__("pathlib").Path("o"), n)) for n in A.ROWS}) == len(A.ROWS)
