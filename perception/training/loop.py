"""The curriculum loop: one linear pass per stage (CleanRL style), read top to bottom in `run_stage`.

`train` checks the inputs, picks the checkpoint to start from and runs the stages in order (`run_curriculum`);
`run_stage` drives a `StageRun` (one stage's loaders, optimizer, scheduler and best epoch) epoch by epoch:
train, validate, step the scheduler, keep the best epoch, report, checkpoint. The helpers above it are the
per-batch pieces (seeding, input preparation, the stage loss, gradient averaging).

Every stage trains the one `PerceptionPipeline`; `stages.TRAINABLE` says which parts. After each
epoch: validation (the stage's selection metric, `selection_metric`, drives ReduceLROnPlateau when that
is the stage's schedule, `lr_scheduler`, and picks the epoch whose weights the stage ends with),
TensorBoard scalars and a sample image, and an atomic checkpoint, so `resume=True` continues from the
last completed epoch and ends with the same weights as an uninterrupted run (shuffling and augmentation
are seeded from (seed, stage, epoch, batch)).
Checkpoints keep the run's config and an identity of its clips; resuming with other settings or other
data is refused with the list of differences.

Data parallel: under `torchrun` each rank gets a `DistributedSampler` shard and the gradients of the
trainable parameters are averaged with `all_reduce` after each backward (the freezing changes per
stage, which a DistributedDataParallel wrapper would need rebuilding for); BatchNorm buffers are
broadcast from rank 0 after each epoch, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from perception.conventions import CLASS_IDS, NUM_CLASSES, colorize, matrix_to_pose6
from perception.data import (
    AugmentConfig,
    Clip,
    ClipStore,
    ClipWindows,
    EqualLengthBatches,
    TemporalAugment,
    hold_frames,
    mirror_frames,
    mixed_windows,
    random_crops,
    zoom_frames,
)
from perception.losses import depth_loss, near_pixel_weights, pose_loss, segmentation_loss
from perception.metrics import DepthMetrics, SegmentationMetrics
from perception.models import PerceptionPipeline, PipelineState, build_model, normalize
from perception.weights import load_weights

from .checkpoint import (
    BEST_FILE,
    CHECKPOINT_FILE,
    check_resume,
    damaged,
    data_identity,
    load_checkpoint,
    restore_model,
    save_checkpoint,
    stage_checkpoint_file,
)
from .config import SCHEDULES, STAGE_NAMES, StageConfig, TrainConfig
from .errors import TrainingError
from .stages import describe, param_groups, set_trainable


@dataclass
class Dist:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda (this rank's GPU under torchrun) if available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, stage, epoch, batch, ...), stable across runs and machines."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] & ((1 << 63) - 1))


def class_weights(windows: ClipWindows, every: int = 4) -> torch.Tensor:
    """Inverse square-root class frequency over every `every`-th frame of the training clips, mean 1 over present classes."""
    counts = np.zeros(NUM_CLASSES, np.float64)
    for clip in windows.clips:
        for i in range(0, len(clip), every):
            counts += np.bincount(clip.frame(i)["semantic"].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    present = counts > 0
    w = np.ones(NUM_CLASSES)
    w[present] = 1.0 / np.sqrt(counts[present] / counts[present].sum())
    w[present] /= w[present].mean()
    return torch.tensor(np.clip(w, 0.05, 20.0), dtype=torch.float32)


def prepare_rgb(rgb: torch.Tensor, augment: TemporalAugment | None, seed: int) -> torch.Tensor:
    """uint8 windows (B, T, 3, H, W) -> normalised floats; with `augment`, each window gets its own seeded augmentation."""
    x = rgb.float() / 255.0
    if augment is not None:
        x = torch.stack([augment(w, torch.Generator().manual_seed(seed_of(seed, i))) for i, w in enumerate(x)])
    return normalize(x)


def window_inputs(
    batch: dict[str, torch.Tensor], augment: TemporalAugment | None, hold_p: float, seed: int, hold_seed: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The network input of a batch of windows (`prepare_rgb`, seeded by `seed`) and the batch; with `hold_p`, the
    cameras of that share of windows stop or start (`hold_frames`, seeded by `hold_seed`) after the noise, so a held
    frame repeats exactly, as a standing camera's frames do."""
    x = prepare_rgb(batch["rgb"], augment, seed)
    if hold_p:
        batch = hold_frames({**batch, "rgb": x}, torch.Generator().manual_seed(hold_seed), hold_p)
        x = batch.pop("rgb")
    return x, batch


def selection_metric(stage: StageConfig) -> tuple[str, bool]:
    """The validation metric that schedules a stage's learning rate and picks its best epoch (`keep_best`), and
    whether higher is better: mIoU where segmentation trains with full weight (the CE loss can rise
    while mIoU still improves, as confidence on hard pixels drops), AbsRel for the depth stage,
    the validation loss otherwise (ego-motion)."""
    if stage.seg_weight >= 1.0:
        return "miou", True
    if stage.depth_weight:
        return "abs_rel", False
    return "loss", False


def is_better(score: float, best: float, higher: bool) -> bool:
    """Whether a validation score beats the best so far (NaN never does, and anything beats NaN)."""
    if math.isnan(score):
        return False
    return math.isnan(best) or (score > best if higher else score < best)


def stage_loss(
    model: PerceptionPipeline,
    stage: StageConfig,
    x: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weights: torch.Tensor | None,
    depth_kind: str,
    state: PipelineState | None = None,
    close: tuple[float, float] | None = None,
    close_depth: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float], dict[str, Any]]:
    """The stage's loss on one batch: the total, its parts (for logging) and the outputs (for metrics).

    `state` (memory stages) is the pipeline state the window continues from, the earlier chunk's under truncated
    back-propagation; the window's first pose pair is then scored too. `close` (weight, metres) weights the
    segmentation loss of Pedestrian pixels nearer than that (`TrainConfig.close_weighting`), `close_depth` the
    depth loss of Vehicles and Pedestrian pixels (`TrainConfig.close_depth_weighting`)."""
    sem, depth_m = batch["semantic"], batch["depth"]
    parts: dict[str, torch.Tensor] = {}
    if stage.name == "ego":
        with torch.no_grad():  # geometry features frozen: embeddings only
            emb = model.geometry_filter.motion_embedding(*model.geometry_filter.encode(x.flatten(0, 1)))
        pose6 = model.ego_motion_filter(emb.unflatten(0, x.shape[:2]))["pose6"]
        parts["pose"] = pose_loss(pose6, matrix_to_pose6(batch["rel_pose"][:, 1:]))
        out: dict[str, Any] = {"pose6": pose6}
    else:
        out = model.geometry_filter(x) if stage.name in ("seg", "depth") else model(x, state)  # (B, T, ...)
        if stage.seg_weight:
            target = sem.flatten(0, 1)
            pixel_weights = None
            if close is not None:
                pixel_weights = near_pixel_weights(
                    target, depth_m.flatten(0, 1), [CLASS_IDS["Pedestrian"]], within_m=close[1], weight=close[0]
                )
            parts["seg"] = segmentation_loss(
                out["seg_logits"].flatten(0, 1), target, weights, pixel_weights=pixel_weights
            )
        if stage.depth_weight:
            depth_weights = None
            if close_depth is not None:
                road_users = [CLASS_IDS["Vehicles"], CLASS_IDS["Pedestrian"]]
                depth_weights = near_pixel_weights(
                    sem.flatten(0, 1), depth_m.flatten(0, 1), road_users, within_m=close_depth[1], weight=close_depth[0]
                )
            parts["depth"] = depth_loss(
                out["log_depth"].flatten(0, 2), depth_m.flatten(0, 1), depth_kind, pixel_weights=depth_weights
            )
        if stage.pose_weight:  # without a state, entry 0 of pose6 has no previous frame: train on pairs 1..T-1
            first = 1 if state is None else 0
            parts["pose"] = pose_loss(out["pose6"][:, first:], matrix_to_pose6(batch["rel_pose"][:, first:]))
    w = {"seg": stage.seg_weight, "depth": stage.depth_weight, "pose": stage.pose_weight}
    total = cast(torch.Tensor, sum(w[k] * v for k, v in parts.items()))  # a Tensor once any loss is weighted
    return total, {k: float(v.detach()) for k, v in parts.items()}, out


def bptt_chunks(stage: StageConfig, frames: int | None = None) -> list[slice]:
    """The frame ranges of a training window of `frames` frames (default: the stage's window) that each get their
    own backward pass and optimizer step: the whole window, or with `stage.bptt` (memory stages) consecutive chunks of
    that many frames (truncated back-propagation through time: the state runs through the window, gradients stop
    at chunk borders)."""
    frames = stage.window if frames is None else frames
    size = stage.bptt if stage.bptt and stage.memory else frames
    return [slice(s, min(s + size, frames)) for s in range(0, frames, size)]


def window_slice(batch: dict[str, torch.Tensor], frames: slice) -> dict[str, torch.Tensor]:
    """The frames `frames` of every per-frame entry of a batch of windows (B, T, ...); the rest unchanged."""
    return {k: v if k == "intrinsics" else v[:, frames] for k, v in batch.items()}


def average_gradients(params: list[torch.nn.Parameter], d: Dist) -> None:
    """Mean of the gradients over ranks (no-op in a single process)."""
    if d.world == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= d.world


def sync_buffers(model: torch.nn.Module, d: Dist) -> None:
    """BatchNorm running statistics from rank 0 to every rank."""
    if d.world > 1:
        for b in model.buffers():
            dist.broadcast(b, 0)


def sample_image(batch: dict[str, torch.Tensor], out: dict[str, Any]) -> np.ndarray | None:
    """RGB | predicted | true segmentation of the first frame of a batch, (H, 3W, 3) uint8, for TensorBoard."""
    if "seg_logits" not in out:
        return None
    rgb = batch["rgb"][0, 0].permute(1, 2, 0).numpy()
    pred = out["seg_logits"][0, 0].argmax(0).cpu().numpy()
    return np.concatenate([rgb, colorize(pred), colorize(batch["semantic"][0, 0].numpy())], axis=1)


@dataclass
class RunContext:
    """What every stage of one run shares: its settings, the clips folder, the output folder, the device, this
    process's rank, the TensorBoard writer (rank 0 only, else None), the segmentation class weights and the log.
    `identity` (the run's `data_identity`) goes into every checkpoint, for `check_resume`."""

    cfg: TrainConfig
    data: Path
    out_dir: Path
    device: torch.device
    d: Dist
    writer: Any
    weights: torch.Tensor | None
    log: Callable[[str], None]
    identity: dict[str, Any]
    started: float = field(default_factory=time.time)
    seconds_before: float = 0.0

    def seconds(self) -> float:
        """The run's wall time so far: since `started` (this call's start, `time.time()`), plus the seconds the
        calls before a resume had taken."""
        return self.seconds_before + time.time() - self.started

    @property
    def folder(self) -> Path:
        return self.out_dir / "checkpoints"


class Validation(NamedTuple):
    """One validation pass: the mean loss, mIoU and AbsRel (NaN where the stage has no such output) and a sample picture."""

    loss: float
    miou: float
    abs_rel: float
    image: np.ndarray | None

    def score(self, metric: str) -> float:
        """The value of `metric` ('miou' | 'abs_rel' | 'loss', as `selection_metric` names it)."""
        return {"miou": self.miou, "abs_rel": self.abs_rel, "loss": self.loss}[metric]


class Best(NamedTuple):
    """The best validation epoch of a stage so far: its score, its number (1-based) and its model weights."""

    score: float
    epoch: int
    model: dict[str, torch.Tensor]


class StageResult(NamedTuple):
    """How a call to `run_stage` ended: the epochs it trained and whether the stage is finished."""

    epochs: int
    finished: bool


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (parameters and buffers) that later training does not change."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def interpolate_weights(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], fraction: float
) -> dict[str, torch.Tensor]:
    """`start + fraction x (end - start)` for every floating-point tensor, the others (BatchNorm's batch counts) as in
    `end`: a weight-space ensemble of a model before and after fine-tuning, which keeps much of what the fine-tuning
    gained on its own data and of what the model knew before (WiSE-FT, Wortsman et al. 2022)."""
    return {k: torch.lerp(start[k], v, fraction) if v.is_floating_point() else v for k, v in end.items()}


def stage_clips(store: ClipStore, stage: StageConfig, split: str, longest: int | None) -> list[Clip]:
    """The recordings of `split` that `stage` reads: those of at most `longest` frames (when given), and the
    episode-style ones (recorded from the first tick: `collect --drive episode` or `approach`) only with
    `stage.episode_recordings`."""
    return [
        c
        for c in store.clips(split=split)
        if (longest is None or len(c) <= longest)
        and (stage.episode_recordings or c.meta.extra.get("drive", "warmup") == "warmup")
    ]


def stage_loaders(
    data: Path | ClipStore, stage: StageConfig, workers: int, longest: int | None, seed: int, d: Dist
) -> tuple[DistributedSampler[Any] | EqualLengthBatches, DataLoader, DataLoader]:
    """A stage's training sampler (its `set_epoch` reshuffles) and its training and validation loaders: windows of
    the stage's length from the recordings it reads (`stage_clips`), plus, with `stage.short_window`, shorter
    windows from the recordings too short for the stage's, each batch of one length."""
    store = data if isinstance(data, ClipStore) else ClipStore(data)
    train_clips, val_clips = (stage_clips(store, stage, split, longest) for split in ("train", "val"))
    for split, clips in (("train", train_clips), ("val", val_clips)):
        if not clips:
            raise ValueError(f"stage {stage.name!r} reads no recorded clips of the {split} split in {store.root}")
    if stage.short_window:
        train, lengths = mixed_windows(train_clips, stage.window, stage.stride, stage.short_window)
        val, val_lengths = mixed_windows(val_clips, stage.window, stage.stride, stage.short_window)
        batches = EqualLengthBatches(lengths, stage.batch_size, seed, d.rank, d.world)
        return (
            batches,
            DataLoader(train, batch_sampler=batches, num_workers=workers),
            DataLoader(val, batch_sampler=EqualLengthBatches(val_lengths, stage.batch_size), num_workers=workers),
        )
    windows = ClipWindows(train_clips, window=stage.window, stride=stage.stride)
    val_windows = ClipWindows(val_clips, window=stage.window, stride=stage.stride)
    sampler: DistributedSampler[Any] = DistributedSampler(
        windows, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed
    )
    return (
        sampler,
        DataLoader(windows, batch_size=stage.batch_size, sampler=sampler, num_workers=workers),
        DataLoader(val_windows, batch_size=stage.batch_size, shuffle=False, num_workers=workers),
    )


def lr_scheduler(
    optimizer: torch.optim.Optimizer, stage: StageConfig, batches: int, higher: bool
) -> LRScheduler | ReduceLROnPlateau:
    """The stage's learning-rate schedule (`stage.schedule`): `plateau` drops the rate 10x when the validation metric
    (higher or lower is better, `higher`) has not improved for `stage.patience` epochs, stepped once per epoch with
    the score; `cosine` takes it from `stage.lr` down to 0 along a half cosine over the stage's `epochs x batches`
    batches, stepped once per batch (a rate annealed to 0 ends the stage on settled weights, not on the last noisy
    steps at full rate)."""
    if stage.schedule == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max" if higher else "min", factor=0.1, patience=stage.patience)
    if stage.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(stage.epochs * batches, 1))
    raise ValueError(f"stage {stage.name!r}: unknown schedule {stage.schedule!r} (known: {', '.join(SCHEDULES)})")


class StageRun:
    """One curriculum stage in training: its data loaders, trainable parameters, optimizer and scheduler, the
    optimizer step count and the best validation epoch so far. `run_stage` drives it epoch by epoch.

    Shuffling and augmentation are seeded from (seed, stage, epoch, batch), so an epoch trains the same
    whether or not the run was resumed before it."""

    def __init__(self, model: PerceptionPipeline, stage: StageConfig, ctx: RunContext, completed: list[str]) -> None:
        """Data: windows of the stage's length, shuffled per epoch from the seed, no augmentation on val; then what
        trains, and its optimizer and scheduler. `completed` (the stages finished before) goes into the checkpoints."""
        cfg, d = ctx.cfg, ctx.d
        self.model, self.stage, self.ctx, self.completed = model, stage, ctx, list(completed)
        self.index = STAGE_NAMES.index(stage.name)
        longest = None if stage.long_recordings else cfg.frames
        seed = seed_of(cfg.seed, self.index) & 0x7FFFFFFF
        self.sampler, self.loader, self.val_loader = stage_loaders(ctx.data, stage, cfg.workers, longest, seed, d)
        self.augment = TemporalAugment(AugmentConfig(clutter_p=stage.clutter_p)) if cfg.augment else None

        self.params = set_trainable(model, stage)
        ctx.log(describe(model, stage))
        self.optimizer = torch.optim.Adam(param_groups(model, stage))
        self.metric, self.higher = selection_metric(stage)
        batches = min(len(self.loader), stage.max_batches or len(self.loader))
        self.scheduler = lr_scheduler(self.optimizer, stage, batches, self.higher)
        self.step = 0
        self.best: Best | None = None
        # With `interpolate` < 1 the stage ends between the weights it starts from and those it trains.
        self.start = snapshot(model) if stage.interpolate < 1 else None

    def resume_from(self, ckpt: dict[str, Any]) -> int:
        """Restore the optimizer, scheduler, step count and best epoch from this stage's checkpoint (and best.pt);
        returns the number of epochs it had completed."""
        stage = self.stage
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            start, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise damaged(
                self.ctx.folder / CHECKPOINT_FILE,
                f"its optimizer state does not fit stage {stage.name!r} ({type(err).__name__}: {err})",
            ) from None
        if self.start is not None:
            if "stage_start" not in ckpt:
                raise damaged(
                    self.ctx.folder / CHECKPOINT_FILE,
                    f"it lacks the weights stage {stage.name!r} started from, which --interpolate needs",
                )
            self.start = ckpt["stage_start"]
        kept = load_checkpoint(self.ctx.folder, BEST_FILE)
        if stage.keep_best and kept is not None and kept["stage"] == stage.name and kept["epoch"] <= start:
            self.best = Best(kept["score"], kept["epoch"], kept["model"])
        self.ctx.log(f"resuming stage {stage.name!r} after epoch {start}/{stage.epochs}")
        return start

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this rank's shard of the training windows (at most `max_batches` batches); returns the
        mean of the total loss and of each of its parts over the optimizer steps."""
        cfg, stage = self.ctx.cfg, self.stage
        torch.manual_seed(seed_of(cfg.seed, self.index, epoch, 1 << 20))
        self.sampler.set_epoch(epoch)
        set_trainable(self.model, stage)
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(
            self.loader,
            desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
            disable=not self.ctx.d.main,
            dynamic_ncols=True,
            total=min(len(self.loader), stage.max_batches or len(self.loader)),
            leave=False,
        )
        for b, batch in enumerate(bar):
            if stage.max_batches is not None and b >= stage.max_batches:
                break
            for losses in self.train_batch(batch, epoch, b):
                n += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{losses['total']:.3f}")
            if not isinstance(self.scheduler, ReduceLROnPlateau):  # per-batch schedules
                self.scheduler.step()
        sync_buffers(self.model, self.ctx.d)
        return {k: v / max(n, 1) for k, v in sums.items()}

    def train_batch(self, batch: dict[str, torch.Tensor], epoch: int, b: int) -> list[dict[str, float]]:
        """Batch `b` of `epoch`: one optimizer step per `bptt_chunks` chunk (the pipeline state carries on from chunk
        to chunk, its graph does not); returns each step's total loss and loss parts."""
        ctx, stage = self.ctx, self.stage
        x, batch = self.inputs(batch, epoch, b)
        state, losses = None, []
        for chunk in bptt_chunks(stage, x.shape[1]):
            loss, parts, out = stage_loss(
                self.model,
                stage,
                x[:, chunk],
                window_slice(batch, chunk),
                ctx.weights,
                ctx.cfg.depth_loss,
                state,
                ctx.cfg.close_weighting(),
                ctx.cfg.close_depth_weighting(),
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(self.params, ctx.d)
            self.optimizer.step()
            state = out["state"].detach() if stage.memory else None
            self.step += 1
            losses.append({"total": float(loss.detach()), **parts})
            if ctx.writer is not None:
                for k, v in losses[-1].items():
                    ctx.writer.add_scalar(f"{stage.name}/train_{k}", v, self.step)
        return losses

    def inputs(
        self, batch: dict[str, torch.Tensor], epoch: int, b: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Batch `b` of `epoch` with its seeded augmentation, on the device: the network input and the batch."""
        cfg, stage, rank = self.ctx.cfg, self.stage, self.ctx.d.rank
        if cfg.crop is not None:
            batch = random_crops(
                batch, torch.Generator().manual_seed(seed_of(cfg.seed, self.index, epoch, b, rank, 5)), cfg.crop
            )
        if stage.mirrors_and_zooms:
            g = torch.Generator().manual_seed(seed_of(cfg.seed, self.index, epoch, b, rank, 7))
            batch = mirror_frames(batch, g) if cfg.mirror else batch
            if not stage.depth_weight:  # a zoom also changes the camera height that metric depth is learnt against
                batch = zoom_frames(batch, g, cfg.zoom)
        x, batch = window_inputs(
            batch,
            self.augment,
            stage.hold_p,
            seed_of(cfg.seed, self.index, epoch, b, rank),
            seed_of(cfg.seed, self.index, epoch, b, rank, 11),
        )
        return x.to(self.ctx.device), {k: v.to(self.ctx.device) for k, v in batch.items()}

    def validate(self) -> Validation:
        """The validation windows (at most `val_batches` batches): mean loss, segmentation and depth metrics, and
        a sample picture (RGB | predicted | true segmentation)."""
        ctx, stage, device = self.ctx, self.stage, self.ctx.device
        self.model.eval()
        vsum, vn, seg_metrics, depth_metrics, image = 0.0, 0, SegmentationMetrics(), DepthMetrics(), None
        with torch.no_grad():
            for b, batch in enumerate(self.val_loader):
                if stage.val_batches is not None and b >= stage.val_batches:
                    break
                x = prepare_rgb(batch["rgb"], None, 0).to(device)
                batch_dev = {k: v.to(device) for k, v in batch.items()}
                loss, _, out = stage_loss(
                    self.model,
                    stage,
                    x,
                    batch_dev,
                    ctx.weights,
                    ctx.cfg.depth_loss,
                    close=ctx.cfg.close_weighting(),
                    close_depth=ctx.cfg.close_depth_weighting(),
                )
                vsum, vn = vsum + float(loss), vn + 1
                if "seg_logits" in out:
                    seg_metrics.update(out["seg_logits"].argmax(2).cpu(), batch["semantic"])
                    if image is None:
                        image = sample_image(batch, out)
                if stage.depth_weight:
                    depth_metrics.update(out["depth"].flatten(0, 2).cpu(), batch["depth"].flatten(0, 1))
        miou = seg_metrics.compute()["miou"] if seg_metrics.confusion.sum() else float("nan")
        return Validation(vsum / max(vn, 1), miou, depth_metrics.compute()["abs_rel"], image)

    def keep_if_best(self, score: float, epoch: int) -> None:
        """With `keep_best`, remember the weights of epoch `epoch` (1-based) when its score beats the best so far,
        and write them to best.pt (rank 0)."""
        if not self.stage.keep_best or (self.best is not None and not is_better(score, self.best.score, self.higher)):
            return
        self.best = Best(score, epoch, snapshot(self.model))
        if self.ctx.d.main:
            save_checkpoint(
                self.ctx.folder,
                {"stage": self.stage.name, "epoch": epoch, "score": score, "model": self.best.model},
                (BEST_FILE,),
            )

    def report(self, epoch: int, train_means: dict[str, float], val: Validation, seconds: float) -> None:
        """The epoch's log line and TensorBoard scalars and sample picture (rank 0)."""
        ctx, name = self.ctx, self.stage.name
        if not ctx.d.main:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        ctx.log(
            f"{name} epoch {epoch + 1}/{self.stage.epochs}: "
            + " ".join(f"{k}={v:.4f}" for k, v in train_means.items())
            + f" val_loss={val.loss:.4f}"
            + ("" if math.isnan(val.miou) else f" val_miou={val.miou:.3f}")
            + ("" if math.isnan(val.abs_rel) else f" val_abs_rel={val.abs_rel:.3f}")
            + f" lr={lr:.1e} ({seconds:.1f}s)"
        )
        if ctx.writer is None:
            return
        ctx.writer.add_scalar(f"{name}/val_loss", val.loss, self.step)
        ctx.writer.add_scalar(f"{name}/lr", lr, self.step)
        if not math.isnan(val.miou):
            ctx.writer.add_scalar(f"{name}/val_miou", val.miou, self.step)
        if not math.isnan(val.abs_rel):
            ctx.writer.add_scalar(f"{name}/val_abs_rel", val.abs_rel, self.step)
        if val.image is not None:
            ctx.writer.add_image(f"{name}/sample_rgb_pred_true", val.image, epoch, dataformats="HWC")
        ctx.writer.flush()

    def end_with_best(self, epoch: int) -> None:
        """At the end of the stage (after epoch `epoch`, 1-based), go back to the best validation epoch's weights."""
        if self.best is not None and self.best.epoch != epoch:
            self.model.load_state_dict(self.best.model)
            self.ctx.log(
                f"{self.stage.name}: keeping epoch {self.best.epoch} (val {self.metric} {self.best.score:.4f})"
            )

    def end_interpolated(self) -> None:
        """At the end of the stage, with `interpolate` < 1, move the weights back towards those it started from."""
        if self.start is not None:
            self.model.load_state_dict(interpolate_weights(self.start, self.model.state_dict(), self.stage.interpolate))
            self.ctx.log(
                f"{self.stage.name}: ending {self.stage.interpolate:g} of the way from its start to its training"
            )

    def save_checkpoint(self, epoch: int, last: bool) -> None:
        """The training state after epoch `epoch` (1-based) to last.pt, and at the stage's end also to
        after_<stage>.pt (rank 0); then every rank waits for it."""
        ctx, name = self.ctx, self.stage.name
        if ctx.d.main:
            save_checkpoint(
                ctx.folder,
                {
                    "stage": name,
                    "epoch": epoch,
                    "step": self.step,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "completed": self.completed + ([name] if last else []),
                    **({"stage_start": self.start} if self.start is not None and not last else {}),
                    "config": json.dumps(ctx.cfg.to_dict()),
                    "seconds": ctx.seconds(),
                    **ctx.identity,
                },
                (CHECKPOINT_FILE, stage_checkpoint_file(name)) if last else (CHECKPOINT_FILE,),
            )
        if ctx.d.world > 1:
            dist.barrier()


def run_stage(
    model: PerceptionPipeline,
    stage: StageConfig,
    ctx: RunContext,
    ckpt: dict[str, Any] | None,
    completed: list[str],
    epochs_left: int | None = None,
) -> StageResult:
    """Train one stage from its first epoch, or from where its checkpoint `ckpt` left it, to its last; stops
    before the stage's end when it has trained `epochs_left` epochs. `completed`: the stages finished before."""
    run = StageRun(model, stage, ctx, completed)
    start = run.resume_from(ckpt) if ckpt is not None else 0
    for epoch in range(start, stage.epochs):
        if epochs_left is not None and epoch - start >= epochs_left:
            return StageResult(epoch - start, finished=False)
        t0 = time.time()
        train_means = run.train_epoch(epoch)
        val = run.validate()
        score = val.score(run.metric)
        if isinstance(run.scheduler, ReduceLROnPlateau):
            run.scheduler.step(score)
        run.keep_if_best(score, epoch + 1)
        run.report(epoch, train_means, val, time.time() - t0)
        last = epoch + 1 == stage.epochs
        if last:  # the stage ends with its best validation epoch's weights, interpolated when asked
            run.end_with_best(epoch + 1)
            run.end_interpolated()
        run.save_checkpoint(epoch + 1, last)
    return StageResult(max(stage.epochs - start, 0), finished=True)


def check_inputs(cfg: TrainConfig, data: Path) -> ClipStore:
    """The clips of a run, after checking its stage names and that `data` has clips of both splits."""
    names = [s.name for s in cfg.stages]
    if not names:
        raise TrainingError("no stages to run")
    for s in names:
        if s not in STAGE_NAMES:
            raise TrainingError(f"unknown stage {s!r}; known: {', '.join(STAGE_NAMES)}")
    store = ClipStore(data)  # raises ClipFormatError naming a broken clip
    for split in ("train", "val"):
        if not store.clips(split=split):
            raise TrainingError(f"{data}: no clips of the {split} split")
    return store


def starting_checkpoint(cfg: TrainConfig, folder: Path, resume: bool) -> tuple[dict[str, Any] | None, Path]:
    """The checkpoint a run starts from, and its path: with `resume` last.pt; for a stage list that starts after
    `seg`, the end of the stage before it (after_<stage>.pt), else last.pt; otherwise none."""
    first = cfg.stages[0].name
    if resume or first == STAGE_NAMES[0]:
        return (load_checkpoint(folder) if resume else None), folder / CHECKPOINT_FILE
    before = stage_checkpoint_file(STAGE_NAMES[STAGE_NAMES.index(first) - 1])
    ckpt = load_checkpoint(folder, before)
    if ckpt is not None:
        return ckpt, folder / before
    return load_checkpoint(folder), folder / CHECKPOINT_FILE


def earlier_stages(cfg: TrainConfig, folder: Path) -> dict[str, Any] | None:
    """How the weights a stage list that starts after `seg` began from were made: the checkpoint at the end of
    the stage before it (after_<stage>.pt), the stages it had completed, their training config and seconds; None
    for a stage list that starts at `seg` or a run without that checkpoint. A weights folder records it, so weights
    trained again from an earlier run's stage end name the whole recipe."""
    ckpt, path = starting_checkpoint(cfg, folder, resume=False)
    if ckpt is None or path.name == CHECKPOINT_FILE:
        return None
    return {
        "checkpoint": path.name,
        "completed": list(ckpt["completed"]),
        "train_config": json.loads(ckpt["config"]),
        "train_seconds": round(float(ckpt.get("seconds", 0.0)), 1),
    }


def run_curriculum(
    model: PerceptionPipeline, ctx: RunContext, resumed: dict[str, Any] | None, stop_after_epochs: int | None
) -> None:
    """Run the configured stages in order, skipping those the resumed checkpoint `resumed` has completed and
    continuing the one it stopped in; ends after `stop_after_epochs` epochs when given."""
    completed = list(resumed["completed"]) if resumed is not None else []
    epochs_done = 0
    for stage in ctx.cfg.stages:
        if stage.name in completed:
            ctx.log(f"stage {stage.name!r} already complete in the checkpoint; skipping")
            continue
        ckpt = resumed if (resumed is not None and resumed["stage"] == stage.name) else None
        left = None if stop_after_epochs is None else stop_after_epochs - epochs_done
        result = run_stage(model, stage, ctx, ckpt, completed, left)
        epochs_done += result.epochs
        if not result.finished:
            ctx.log(f"stopped after {epochs_done} epoch(s) as asked; continue with --resume")
            return
        completed.append(stage.name)


def train(
    cfg: TrainConfig,
    data: str | Path,
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    resume: bool = False,
    init_from: str | Path | None = None,
    stop_after_epochs: int | None = None,
    log: Callable[[str], None] = print,
    started: float | None = None,
) -> PerceptionPipeline:
    """Run the configured stages on the clips in `data` (split train; val drives the scheduler); returns the model.

    `resume` continues from OUT/checkpoints/last.pt (refused when the run was started with other settings or
    clips: `check_resume`; a damaged checkpoint raises `CheckpointError` naming it). A stage list that starts
    after `seg` starts from the weights at the end of the stage before it (OUT/checkpoints/after_<stage>.pt,
    else last.pt). `init_from` (a weights folder) starts the first stage from those weights instead: fine-tuning
    later stages of bundled weights with other data or settings; `resume` still wins once the run has a checkpoint.
    `stop_after_epochs` ends the run after that many epochs in this call (used to test resuming).
    `started` (`time.time()`, default now) is when this call's work began, e.g. before recording the clips: every
    checkpoint keeps the run's wall time since then plus that of the calls before a resume (`run_seconds`).
    """
    started = time.time() if started is None else started
    data, out_dir = Path(data), Path(out_dir)
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    d = setup_distributed(device)
    store = check_inputs(cfg, data)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.network(), device=device)
    folder = out_dir / "checkpoints"
    identity = {"data": data_identity(store)}
    ckpt, path = starting_checkpoint(cfg, folder, resume)
    if init_from is not None and not (resume and ckpt is not None):
        load_weights(init_from, model=model)
        ckpt = None
        log(f"starting from the weights in {init_from}")
    if ckpt is not None:
        if resume:
            check_resume(ckpt, cfg, identity["data"], path)
        restore_model(model, ckpt, path)
        log(f"loaded checkpoint: stage {ckpt['stage']!r}, epoch {ckpt['epoch']}")
    elif init_from is None and (resume or cfg.stages[0].name != STAGE_NAMES[0]):
        log(f"no checkpoint in {folder}: starting from untrained weights")
    writer = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"))
    weights = None
    if cfg.class_weighted:
        weights = class_weights(ClipWindows(store, window=1, split="train")).to(device)
    before = float(ckpt.get("seconds", 0.0)) if resume and ckpt is not None else 0.0
    ctx = RunContext(cfg, data, out_dir, device, d, writer, weights, log, identity, started, before)
    try:
        run_curriculum(model, ctx, ckpt if resume else None, stop_after_epochs)
    finally:
        if writer is not None:
            writer.close()
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return model
