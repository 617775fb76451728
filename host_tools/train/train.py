"""Train an embedding net from ``kernels/nets.py`` with the multibatch (or k/2-pairs) hinge loss.

One job: the training loop.  Data from the shared data folder or a pack (``data.py``), the net from
``torch_nets.py``, the loss from ``losses.py``, batches from ``samplers.py``, LFW dev accuracy from
``evaluate.py``.  Deterministic given the seed (same machine, same device, same worker count); float32 only
(no mixed precision).  Writes into ``out``:

* ``history.jsonl``: one JSON line per epoch (step, images seen, train loss, val loss, LFW dev accuracy, wall s);
* ``last.pt`` every ``ckpt_every`` steps and at each epoch end (model, optimizer, schedule, loss, step), from
  which ``resume`` continues exactly; ``best.pt`` at the best LFW dev accuracy;
* with ``ema_decay`` > 0, ``ema.pt`` at every row: the exponential moving average of the weights and BatchNorm
  statistics (``torch.optim.swa_utils.AveragedModel``, updated after every step, kept in ``last.pt``), scored
  on the held-out identities beside the weights themselves (``ema_heldout_*`` in the row).  At a high learning
  rate the weights jitter around a better point: averaging two rows 250 steps apart gained 0.6 / 0.9 points
  there (docs/RESULTS.md);
* ``config.json``.

Distributed: under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on CUDA) each process embeds 1/N of
the global batch of ``batch`` images, the loss all-gathers the embeddings (``losses.GlobalBatchLoss``) so every
step uses the global batch's pairs, and DistributedDataParallel averages the gradients: the update equals the
single-process one (``tests/host_tools/train/test_distributed.py``).  BatchNorm: SyncBatchNorm on CUDA; per-process
batch statistics on CPU (PyTorch's SyncBatchNorm is CUDA-only).  Rank 0 evaluates and writes all files.

LFW dev accuracy: the View 1 test pairs (``pairsDevTest.txt``, 500 + 500), 10-fold as in ``evaluate`` (pairs
assigned to folds round-robin); used only to pick the best checkpoint, never to train.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wearface.kernels import nets

from ..errors import HostToolError
from . import data as D
from . import evaluate as E
from . import teacher as T
from .heldout import verification
from .losses import DistillationLoss, GlobalBatchLoss, MultibatchLoss, build_loss
from .samplers import MixedBatchSampler, PairBatchSampler, PKBatchSampler, UniformBatchSampler
from .torch_nets import build_torch_net, to_input


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in ``config.json`` and in every checkpoint)."""

    net: str = "A"
    data: str = ""
    out: str = "runs/a1"
    device: str = "cpu"
    epochs: float = 1.0
    images: int = 0  # if > 0: train on this many images (overrides epochs)
    time_budget_s: float = 0.0  # if > 0: fit the run (cosine schedule included) into this much wall time
    batch: int = 128
    k_per_identity: int = 4  # P x K batches: P = batch // K
    loss: str = "multibatch"  # or "pairs"
    weighting: str = "balanced"
    theta: float = 1.0
    distance_scale: float = 1.0  # the hinge sees distance_scale * d (losses.py explains why one may want > 1)
    learn_theta: bool = False
    pairs_positive_fraction: float = 0.5
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    seed: int = 0
    workers: int = 2
    ckpt_every: int = 200
    channels_last: bool = False
    batchnorm: bool = True
    augment: bool = True
    val_fraction: float = 0.05
    subsets: tuple = D.DEFAULT_SUBSETS
    val_batches: int = 8  # fixed P x K batches for the metric loss on val (and on train)
    eval_every_steps: int = 0  # if > 0: also log a history row every N steps (else once per epoch)
    threads: int = 0  # torch CPU threads (0: torch's default)
    lfw: str = ""  # LFW folder (default: <data>/lfw when data is a folder; the pack's own dev images otherwise)
    # distillation (losses.DistillationLoss) from the teacher descriptors cached by ``wearface teacher descriptors``
    teacher: str = ""  # cache file; "" = no distillation
    distill_relational: float = 2.0
    distill_direct: float = 1.0
    hinge_weight: float = 1.0  # weight of the identity hinge next to the distillation terms (0: distillation only)
    all_faces: bool = False  # keep singleton identities in training (P x K never draws them: they come as extras)
    extra_per_batch: int = 0  # images per batch drawn from singletons and video faces, on top of batch - extra P x K ones
    video: tuple = ()  # videos whose faces (cut as the board cuts them) join training without labels; needs a teacher
    video_bundle: str = "models/default.wfb"  # whose alignment net frames the video faces
    video_stride: int = 3
    # "loader": decode and augment per image in DataLoader workers (cv2, ``data.Augment``); "memory": decode every
    # crop once into a uint8 tensor and augment whole batches in torch on the device (``batch_augment``)
    pipeline: str = "loader"
    damage: float = 1.0  # memory pipeline: strength of the camera damage (batch_augment.Damage); 0 = geometry only
    select_on: str = "lfw_dev"  # best.pt by "lfw_dev" (View 1 test pairs) or "heldout" (held-out CelebA identities)
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights, per step (ema.pt at each row)
    init: str = ""  # start from this checkpoint's weights (same net) with a fresh optimizer and schedule ("" = random)
    extra: dict = field(default_factory=dict)


class FaceDataset(Dataset):
    """``dataset[(i, aug_seed)] -> (uint8 (112, 112, 3) RGB tensor, label[, teacher descriptor])``.

    Images ``0..len(records)-1`` are the records (labels 0..n_identities-1), then ``extra_images`` (label -1:
    no identity).  ``teacher``: (len(self), 128) float32 L2-normalised targets, returned as a third item (taken
    on the un-augmented image: the student learns to give an augmented face its clean face's place).
    Augmented iff ``augment``."""

    def __init__(self, records: D.FaceRecords, augment: D.Augment | None, extra_images: list | tuple = (),
                 teacher: np.ndarray | None = None):
        self.records, self.augment, self.extra = records, augment, list(extra_images)
        self.labels = np.concatenate([records.labels(), np.full(len(self.extra), -1, dtype=np.int64)])
        if teacher is not None and teacher.shape[0] != len(self.labels):
            raise HostToolError(f"{teacher.shape[0]} teacher descriptors for {len(self.labels)} images")
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item):
        i, aug_seed = item
        n = len(self.records)
        img = self.records.decode(i) if i < n else self.extra[i - n]
        if self.augment is not None:
            img = self.augment(img, np.random.default_rng(aug_seed))
        out = torch.from_numpy(np.ascontiguousarray(img)), int(self.labels[i])
        if self.teacher is None:
            return out
        return (*out, torch.from_numpy(self.teacher[i]))


class SeededBatches:
    """Wraps a batch sampler: each index becomes (index, augmentation seed), fixed by (seed, epoch, batch, slot).

    Distributed: the sampler yields the global batch and rank r keeps its r-th contiguous 1/world share."""

    def __init__(self, sampler, seed: int, skip: int = 0, rank: int = 0, world: int = 1):
        self.sampler, self.seed, self.skip, self.rank, self.world = sampler, seed, skip, rank, world

    def __len__(self) -> int:
        return len(self.sampler) - self.skip

    def __iter__(self):
        for b, batch in enumerate(self.sampler):
            if b < self.skip:
                continue
            base = (self.seed * 1_000_003 + self.sampler.epoch) * 1_000_003 + b
            seeded = [(i, base * 4096 + slot) for slot, i in enumerate(batch)]
            n = len(seeded) // self.world
            yield seeded[self.rank * n : (self.rank + 1) * n]


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_training_data(cfg: TrainConfig):
    """(train records, val records, LFW dev pairs or None, image_of(name, index) or None) from a folder or a pack."""
    if D.is_pack(cfg.data):
        pack = D.load_pack(cfg.data)
        dev = pack.lfw_dev_pairs
        image_of = (lambda n, i: D.decode_jpeg_rgb(pack.lfw_jpeg[(n, i)], f"pack LFW {n} {i}")) if dev else None
        return pack.train, pack.val, dev, image_of
    root = Path(cfg.data)
    if not root.is_dir():
        raise HostToolError(f"--data {cfg.data}: neither a data folder nor a .npz pack")
    everything = D.load_celeba(root, cfg.subsets)
    train, val = D.split_by_identity(D.drop_singletons(everything), cfg.val_fraction, cfg.seed)
    if cfg.all_faces:  # the same val identities; the singletons join train (as extras: P x K never draws them)
        train = everything.subset(np.flatnonzero(~np.isin(everything.identities, val.identities)))
    lfw_zip, _, dev_path = D.lfw_paths(cfg.lfw or root)
    dev, image_of = None, None
    if lfw_zip.is_file() and dev_path.is_file():
        dev = D.read_pairs(dev_path)
        lfw = D.LfwImages(lfw_zip)
        image_of = lfw.crop112
    return train, val, dev, image_of


def dev_folds(pairs: D.PairsFile, n: int = 10) -> D.PairsFile:
    """View 1 has one 'fold'; assign its pairs round-robin to ``n`` folds for a cross-validated threshold."""
    return D.PairsFile(n, pairs.n_per_half, tuple(
        D.Pair(p.name1, p.index1, p.name2, p.index2, p.same, k % n) for k, p in enumerate(pairs.pairs)))


class Trainer:
    """Holds the model, optimizer, schedule, data loaders and state; ``run()`` trains to the configured end."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print):
        self.cfg, self.progress = cfg, progress
        self.log = lambda *a: log(*a) if getattr(self, "rank", 0) == 0 else None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _seed_everything(cfg.seed)
        self.device = torch.device(cfg.device)
        self.rank, self.world = self._init_distributed()
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise HostToolError("--device cuda: no CUDA device visible to torch")
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False  # float32 only, as on CPU
            torch.backends.cudnn.allow_tf32 = False
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)

        self.train_records, self.val_records, dev, self.image_of = load_training_data(cfg)
        self.dev_pairs = dev_folds(dev) if dev is not None else None
        self._dev_cache: dict = {}
        video_faces = self._video_faces()
        teacher = self._teacher_targets([T.celeba_key(f) for f in self.train_records.celeba_files] + [k for k, _ in video_faces])
        self.train_set = FaceDataset(self.train_records, D.Augment() if cfg.augment else None, [c for _, c in video_faces],
                                     teacher)
        self.distill = DistillationLoss(cfg.distill_relational, cfg.distill_direct).to(self.device) if cfg.teacher else None
        self.val_set = FaceDataset(self.val_records, None)
        self.memory = self._memory_pipeline(video_faces, teacher) if cfg.pipeline == "memory" else None
        if cfg.pipeline not in ("loader", "memory"):
            raise HostToolError(f"--pipeline {cfg.pipeline}: 'loader' or 'memory'")
        if cfg.select_on not in ("lfw_dev", "heldout"):
            raise HostToolError(f"--select-on {cfg.select_on}: 'lfw_dev' or 'heldout'")
        self._heldout = None  # (clean uint8, hard uint8, identity labels), decoded at the first evaluation

        spec = nets.get_net(cfg.net)
        if spec.output != "embedding":
            raise HostToolError(f"--net {cfg.net}: not an embedding net (the alignment net trains elsewhere)")
        self.model = build_torch_net(spec, batchnorm=cfg.batchnorm)
        if cfg.init and not (resume and (self.out / "last.pt").is_file()):
            self._init_weights(Path(cfg.init))
        if self.world > 1 and self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = None
        if cfg.ema_decay:
            if not 0.0 < cfg.ema_decay < 1.0:
                raise HostToolError(f"--ema-decay {cfg.ema_decay}: expected a decay per step in (0, 1), e.g. 0.998")
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # buffers too: the average's BatchNorm statistics follow the averaged weights' own history
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.train_model = self.model
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.loss_fn = build_loss(cfg.loss, cfg.theta, cfg.learn_theta, cfg.weighting, cfg.distance_scale).to(self.device)
        self.metric_loss = MultibatchLoss(cfg.theta, weighting="balanced", distance_scale=cfg.distance_scale).to(self.device)
        self.train_loss = GlobalBatchLoss(self.loss_fn)
        params = list(self.model.parameters()) + list(self.loss_fn.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        self.steps_per_epoch = max(1, len(self.train_records) // cfg.batch)
        n_images = cfg.images if cfg.images > 0 else int(cfg.epochs * self.steps_per_epoch * cfg.batch)
        self.total_steps = max(1, math.ceil(n_images / cfg.batch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step, self.epoch, self.best_dev, self.wall_s = 0, 0, -1.0, 0.0
        if resume and (self.out / "last.pt").is_file():
            self._load(self.out / "last.pt")
        # a resumed time-budgeted run counts the wall time already spent
        self.wall_s_at_start = self.wall_s if cfg.time_budget_s > 0 else 0.0
        if self.rank == 0:
            (self.out / "config.json").write_text(json.dumps(asdict(self.cfg), indent=1, default=list))

    # ------------------------------------------------------------------------------------------- pieces
    def _video_faces(self) -> list:
        cfg = self.cfg
        if not cfg.video:
            return []
        if not cfg.teacher:
            raise HostToolError("--video faces carry no identity labels: they need --teacher (distillation)")
        from .video_faces import video_face_crops

        return [kc for v in cfg.video for kc in video_face_crops(v, cfg.video_bundle, cfg.video_stride)]

    def _memory_pipeline(self, video_faces: list, teacher: np.ndarray | None) -> dict:
        """The memory pipeline's tensors: every training crop (uint8 NHWC), labels, teacher targets, the augmenter."""
        from .batch_augment import BatchAugment, Damage
        from .face_tensor import decode_all

        t0 = time.perf_counter()
        images = torch.from_numpy(decode_all(self.train_records, [c for _, c in video_faces], max(1, torch.get_num_threads())))
        self.log(f"memory pipeline: {len(images)} crops decoded into {images.numel() / 2**20:.0f} MiB in "
                 f"{time.perf_counter() - t0:.0f} s")
        damage = Damage(self.cfg.damage) if self.cfg.augment else None
        where = self.device if self.device.type == "cuda" else torch.device("cpu")  # on a GPU: everything on it
        return {"images": images.to(where), "labels": torch.from_numpy(self.train_set.labels).to(where),
                "teacher": None if teacher is None else torch.from_numpy(teacher).to(where),
                "augment": BatchAugment(damage, self.device)}

    def _memory_batches(self, batches: "SeededBatches"):
        """(network input on the device, labels, teacher targets or None) per batch; the damage drawn from a
        generator seeded by (seed, step), so a resumed run draws the same batches and the same damage."""
        m = self.memory
        step = self.step
        for batch in batches:
            idx = torch.as_tensor([i for i, _ in batch], dtype=torch.long).to(m["images"].device)
            gen = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) % (2**63))
            step += 1
            x = m["augment"](m["images"][idx], gen)
            if self.cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, m["labels"][idx], None if m["teacher"] is None else m["teacher"][idx]

    def heldout_scores(self, model=None, prefix: str = "") -> dict:
        """Verification on the held-out CelebA identities (the val split), clean and camera-damaged copies, of
        ``model`` (default: the one training); keys ``{prefix}heldout_acc``, ``..._tar``, ``heldout_hard_...``."""
        from .batch_augment import hard_copy
        from .face_tensor import decode_all

        if len(np.unique(self.val_records.identities)) < 2:
            return {}
        if self._heldout is None:
            clean = decode_all(self.val_records)
            self._heldout = (clean, hard_copy(clean), self.val_records.identities)
        clean, hard, ids = self._heldout
        embed = E.torch_embedder(model if model is not None else self.model, self.device, self.cfg.channels_last)
        out = {}
        for name, imgs in (("heldout", clean), ("heldout_hard", hard)):
            emb = np.concatenate([embed(imgs[s:s + 256]) for s in range(0, len(imgs), 256)])
            v = verification(emb, ids)
            out[f"{prefix}{name}_acc"] = v.balanced_accuracy
            out[f"{prefix}{name}_tar"] = v.tar_at_far_1e3
        return out

    def _teacher_targets(self, keys: list[str]) -> np.ndarray | None:
        """(len(keys), 128) L2-normalised teacher descriptors, or None without a teacher; every key must be cached."""
        if not self.cfg.teacher:
            return None
        desc, found = T.load_cache(self.cfg.teacher).lookup(keys)
        if not found.all():
            missing = [k for k, f in zip(keys, found) if not f]
            raise HostToolError(f"--teacher {self.cfg.teacher}: {len(missing)} of {len(keys)} training images have no "
                                f"teacher descriptor (first: {missing[0]}); run `wearface teacher descriptors` on the same data")
        return desc / np.linalg.norm(desc, axis=1, keepdims=True)

    def objective(self, emb: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        """hinge_weight x identity hinge (on the labelled rows) + distillation (on every row, if a teacher)."""
        total = emb.new_zeros(())
        if self.cfg.hinge_weight:
            keep = labels >= 0
            total = total + self.cfg.hinge_weight * self.train_loss(emb[keep], labels[keep])
        if self.distill is not None:
            total = total + self.distill(emb, teacher)
        return total

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 0 at the last step."""
        if step < self.cfg.warmup_steps:
            return (step + 1) / self.cfg.warmup_steps
        t = (step - self.cfg.warmup_steps) / max(1, self.total_steps - self.cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    def _sampler(self, labels: np.ndarray, n_batches: int | None, seed: int):
        cfg = self.cfg
        if cfg.loss == "pairs":
            if cfg.extra_per_batch or cfg.video:
                raise HostToolError("extra images per batch (singletons, video faces) need --loss multibatch")
            return PairBatchSampler(labels, cfg.batch // 2, cfg.pairs_positive_fraction, n_batches, seed)
        if cfg.teacher and not cfg.hinge_weight:  # distillation alone: batches need no identity at all
            return UniformBatchSampler(len(labels), cfg.batch, n_batches, seed)
        extra = cfg.extra_per_batch
        pk = PKBatchSampler(labels, (cfg.batch - extra) // cfg.k_per_identity, cfg.k_per_identity, n_batches, seed)
        if not extra:
            return pk
        ids, counts = np.unique(labels, return_counts=True)
        pool = np.flatnonzero((labels < 0) | np.isin(labels, ids[counts < 2]))
        return MixedBatchSampler(pk, pool, extra, seed)

    def _loader(self, dataset: FaceDataset, batches: SeededBatches) -> DataLoader:
        workers = self.cfg.workers
        return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, prefetch_factor=4 if workers else None)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        x = to_input(images.to(self.device, non_blocking=True))
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _checkpoint(self) -> dict:
        return {
            "config": asdict(self.cfg),
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "best_dev": self.best_dev,
            "wall_s": self.wall_s,
            "torch_rng": torch.get_rng_state(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def _save(self, name: str, weights_only: bool = False, average: bool = False) -> None:
        """Atomic save; ``weights_only``: model, loss, config and counters (no optimizer: a third the size);
        ``average``: the weights' moving average in the place of the weights (with ``weights_only``: a checkpoint
        like best.pt, of the average)."""
        if self.rank != 0:
            return
        tmp = self.out / (name + ".tmp")
        ckpt = self._checkpoint()
        if weights_only:
            for k in ("optimizer", "scheduler", "torch_rng", "ema"):
                ckpt.pop(k, None)
        if average:
            ckpt["model"], ckpt["ema_decay"] = self.ema.module.state_dict(), self.cfg.ema_decay
        torch.save(ckpt, tmp)
        os.replace(tmp, self.out / name)

    def _init_weights(self, path: Path) -> None:
        """The model's weights (and BatchNorm statistics) from ``path``, a training or shipped checkpoint of the same
        net; only the weights: the optimizer, schedule and step start afresh (a fine-tune, unlike ``--resume``)."""
        if not path.is_file():
            raise HostToolError(f"--init {path}: checkpoint missing")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            net = ckpt["config"]["net"]
            state = ckpt["model"]
        except (KeyError, TypeError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            raise HostToolError(f"--init {path}: not a wearface checkpoint ({exc})") from None
        if net != self.cfg.net:
            raise HostToolError(f"--init {path}: a model-{net} checkpoint, but this run trains model {self.cfg.net}")
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise HostToolError(f"--init {path}: its weights do not fit this net ({exc})") from None
        self.log(f"init: weights from {path} (model {net}); optimizer and schedule start afresh")

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.loss_fn.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch, self.best_dev, self.wall_s = ckpt["step"], ckpt["epoch"], ckpt["best_dev"], ckpt["wall_s"]
        torch.set_rng_state(ckpt["torch_rng"])
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        elif self.ema is not None:  # its first update copies the resumed weights
            self.log("ema: no average in the checkpoint; it starts from the resumed weights")
        if self.cfg.time_budget_s > 0:
            self.total_steps = ckpt.get("total_steps", self.total_steps)
        old = ckpt["config"]
        changed = {k: (old.get(k), v) for k, v in asdict(self.cfg).items()
                   if k not in ("out", "workers", "threads") and old.get(k) != v
                   and not (isinstance(v, tuple) and list(v) == old.get(k))}
        if changed:
            self.log(f"warning: resuming with a changed config (old, new): {changed}")
        self.log(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    def _init_distributed(self) -> tuple[int, int]:
        """(rank, world size); under torchrun (WORLD_SIZE > 1) joins the process group: nccl on CUDA, gloo on CPU."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return 0, 1
        import torch.distributed as dist

        if self.cfg.batch % world:
            raise HostToolError(f"--batch {self.cfg.batch} must be divisible by the {world} processes")
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size()

    def _broadcast_int(self, value: int) -> int:
        """Rank 0's value on every rank (the step count must agree or the collectives would hang)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, 0)
        return int(t.item())

    def _fit_time_budget(self, run_t0: float, run_step0: int) -> None:
        """Set ``total_steps`` so the run ends within ``time_budget_s`` at the speed so far (evals included)."""
        elapsed = time.perf_counter() - run_t0
        done = self.step - run_step0
        if done <= 0:
            return
        remaining = self.cfg.time_budget_s - self.wall_s_at_start - elapsed
        new_total = self._broadcast_int(self.step + max(0, int(0.97 * remaining * done / elapsed)))
        if done > 100 and new_total > self.total_steps:
            return  # only shorten after the first 100 steps: lengthening would re-raise a decayed learning rate
        if new_total != self.total_steps:
            self.log(f"time budget: {done / elapsed * self.cfg.batch:.0f} images/s so far; total steps {self.total_steps} "
                     f"-> {new_total}")
            self.total_steps = max(self.step, new_total)

    def fixed_batches_loss(self, dataset: FaceDataset) -> float:
        """The metric loss (balanced multibatch hinge, θ fixed at the config's) on ``val_batches`` fixed P x K
        batches of ``dataset`` (eval mode, no augmentation): one yardstick for multibatch and pairs runs alike."""
        cfg = self.cfg
        if len(dataset) < cfg.batch or cfg.val_batches <= 0:
            return float("nan")
        try:
            sampler = PKBatchSampler(dataset.labels, cfg.batch // cfg.k_per_identity, cfg.k_per_identity, cfg.val_batches,
                                     seed=12345)
        except HostToolError:
            return float("nan")
        plain = FaceDataset(dataset.records, None)
        self.model.eval()
        total = []
        with torch.no_grad():
            for batch in SeededBatches(sampler, 0):
                imgs = torch.stack([plain[it][0] for it in batch])
                lab = torch.as_tensor([plain[it][1] for it in batch], device=self.device)
                total.append(float(self.metric_loss(self.model(self._to_device(imgs)), lab)))
        self.model.train()
        return float(np.mean(total))

    def dev_accuracy(self) -> float:
        """LFW View 1 test pairs, 10-fold accuracy (mean), or NaN without LFW."""
        if self.dev_pairs is None:
            return float("nan")
        if not self._dev_cache:
            for key in D.pair_images(self.dev_pairs):
                self._dev_cache[key] = self.image_of(*key)
        res = E.verify_pairs(E.torch_embedder(self.model, self.device, self.cfg.channels_last), self.dev_pairs,
                             lambda n, i: self._dev_cache[(n, i)], batch=256)
        return res.mean

    # ---------------------------------------------------------------------------------------------- run
    def _log_row(self, losses: list, epoch_t0: float, run_t0: float, run_step0: int, history: list) -> None:
        """Evaluate, append one history row (and to history.jsonl), save last.pt and best.pt (rank 0 only)."""
        cfg = self.cfg
        if cfg.time_budget_s > 0:
            self._fit_time_budget(run_t0, run_step0)
        if self.rank != 0:
            import torch.distributed as dist

            dist.barrier()
            return
        row = {
            "epoch": round(self.step / self.steps_per_epoch, 3),
            "step": self.step,
            "images_seen": self.step * cfg.batch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_fixed_loss": self.fixed_batches_loss(self.train_set),
            "val_loss": self.fixed_batches_loss(self.val_set),
            "lfw_dev_acc": self.dev_accuracy(),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "theta": float(self.loss_fn.theta),
            "train_wall_s": round(self.wall_s, 1),
            "images_per_s": round(len(losses) * cfg.batch / max(1e-9, time.perf_counter() - epoch_t0), 1),
        }
        if cfg.time_budget_s > 0:
            row["total_steps"] = self.total_steps
        if cfg.select_on == "heldout" or cfg.pipeline == "memory":
            row.update(self.heldout_scores())
            if self.ema is not None:
                row.update(self.heldout_scores(self.ema.module, "ema_"))
        score = row["lfw_dev_acc"]
        if cfg.select_on == "heldout":  # clean and damaged held-out identities weigh the same
            score = 0.5 * (row.get("heldout_acc", float("nan")) + row.get("heldout_hard_acc", float("nan")))
        if score == score and score > self.best_dev:
            self.best_dev = score
            self._save("best.pt", weights_only=True)
        if self.ema is not None:
            self._save("ema.pt", weights_only=True, average=True)
        self._save("last.pt")
        with open(self.out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        history.append(row)
        self.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def run(self, stop_after_steps: int = 0) -> list[dict]:
        """Train to ``total_steps`` (or stop early at ``stop_after_steps``, saving last.pt: for tests); returns history rows."""
        from tqdm import tqdm

        cfg = self.cfg
        self.log(f"train: {len(self.train_records)} images of {len(np.unique(self.train_records.identities))} identities; "
                 f"val: {len(self.val_records)} images of {len(np.unique(self.val_records.identities))}; "
                 f"{self.total_steps} steps of {cfg.batch} ({self.steps_per_epoch} per epoch) on {self.device}")
        history = []
        self.model.train()
        run_t0, run_step0 = time.perf_counter(), self.step
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress or self.rank != 0, unit="step",
                   dynamic_ncols=True)
        # with eval_every_steps, rows come every N steps and at the end, never per epoch: on a small set an epoch is
        # a few seconds of GPU time and an evaluation tens of seconds
        losses, epoch_t0 = [], time.perf_counter()
        while self.step < self.total_steps:
            # epochs are counted from the step, so a run that ends mid-epoch resumes at the same batch
            self.epoch, skip = divmod(self.step, self.steps_per_epoch)
            n_batches = min(self.steps_per_epoch, self.total_steps - self.epoch * self.steps_per_epoch)
            sampler = self._sampler(self.train_set.labels, n_batches, cfg.seed)
            sampler.set_epoch(self.epoch)
            t0 = time.perf_counter()
            if not cfg.eval_every_steps:
                losses, epoch_t0 = [], t0
            seeded = SeededBatches(sampler, cfg.seed, skip, self.rank, self.world)
            batches = self._memory_batches(seeded) if self.memory else self._loader(self.train_set, seeded)
            for images, labels, *teacher in batches:
                teacher = [t for t in teacher if t is not None]
                emb = self.train_model(images if self.memory else self._to_device(images))
                loss = self.objective(emb, labels.to(self.device), teacher[0].to(self.device) if teacher else None)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.step += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=self.epoch, loss=f"{np.mean(losses[-50:]):.4f}")
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.wall_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._save("last.pt")
                if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0 and self.step < self.total_steps:
                    self.wall_s += time.perf_counter() - t0
                    self._log_row(losses, epoch_t0, run_t0, run_step0, history)
                    losses, t0, epoch_t0 = [], time.perf_counter(), time.perf_counter()
                if cfg.time_budget_s > 0 and self.step - run_step0 in (20, 100):
                    self._fit_time_budget(run_t0, run_step0)
                if stop_after_steps and self.step >= stop_after_steps:
                    break
                if self.step >= self.total_steps:
                    break
            self.wall_s += time.perf_counter() - t0
            if stop_after_steps and self.step >= stop_after_steps and self.step < self.total_steps:
                self._save("last.pt")
                break
            if not cfg.eval_every_steps or self.step >= self.total_steps:
                self._log_row(losses, epoch_t0, run_t0, run_step0, history)
                losses, epoch_t0 = [], time.perf_counter()
        bar.close()
        return history
