"""The curriculum loop: one linear pass per stage (CleanRL style), read top to bottom in `run_stage`.

Every stage trains the one `PerceptionPipeline`; `stages.TRAINABLE` says which parts. After each
epoch: validation (the stage's selection metric, `selection_metric`, drives ReduceLROnPlateau and
picks the epoch whose weights the stage ends with), TensorBoard scalars and a sample image, and an
atomic checkpoint, so `resume=True` continues from the last completed epoch and ends with the same
weights as an uninterrupted run (shuffling and augmentation are seeded from (seed, stage, epoch, batch)).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from perception.conventions import NUM_CLASSES, colorize, matrix_to_pose6
from perception.data import AugmentConfig, ClipStore, ClipWindows, TemporalAugment, mirror_frames, zoom_frames
from perception.losses import depth_loss, pose_loss, segmentation_loss
from perception.metrics import DepthMetrics, SegmentationMetrics
from perception.models import PerceptionPipeline, PipelineState, build_model, normalize

from .checkpoint import BEST_FILE, CHECKPOINT_FILE, load_checkpoint, save_checkpoint, stage_checkpoint_file
from .config import STAGE_NAMES, StageConfig, TrainConfig
from .stages import describe, set_trainable


class TrainingError(RuntimeError):
    """A training run cannot start or go on (bad data, unknown stage, mismatching checkpoint)."""


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


def stage_loss(model: PerceptionPipeline, stage: StageConfig, x: torch.Tensor, batch: dict[str, torch.Tensor],
               weights: torch.Tensor | None, depth_kind: str,
               state: PipelineState | None = None) -> tuple[torch.Tensor, dict[str, float], dict[str, Any]]:
    """The stage's loss on one batch: the total, its parts (for logging) and the outputs (for metrics).

    `state` (seq stage) is the pipeline state the window continues from, the earlier chunk's under truncated
    back-propagation; the window's first pose pair is then scored too."""
    sem, depth_m = batch["semantic"], batch["depth"]
    parts: dict[str, torch.Tensor] = {}
    if stage.name == "ego":
        with torch.no_grad():  # geometry features frozen: embeddings only
            emb, _ = model.geometry_filter.encode(x.flatten(0, 1))
        pose6 = model.ego_motion_filter(emb.unflatten(0, x.shape[:2]))["pose6"]
        parts["pose"] = pose_loss(pose6, matrix_to_pose6(batch["rel_pose"][:, 1:]))
        out: dict[str, Any] = {"pose6": pose6}
    else:
        out = model.geometry_filter(x) if stage.name in ("seg", "depth") else model(x, state)  # (B, T, ...)
        if stage.seg_weight:
            parts["seg"] = segmentation_loss(out["seg_logits"].flatten(0, 1), sem.flatten(0, 1), weights)
        if stage.depth_weight:
            parts["depth"] = depth_loss(out["log_depth"].flatten(0, 2), depth_m.flatten(0, 1), depth_kind)
        if stage.pose_weight:  # without a state, entry 0 of pose6 has no previous frame: train on pairs 1..T-1
            first = 1 if state is None else 0
            parts["pose"] = pose_loss(out["pose6"][:, first:], matrix_to_pose6(batch["rel_pose"][:, first:]))
    w = {"seg": stage.seg_weight, "depth": stage.depth_weight, "pose": stage.pose_weight}
    total = sum(w[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}, out


def bptt_chunks(stage: StageConfig) -> list[slice]:
    """The frame ranges of a training window that each get their own backward pass and optimizer step: the
    whole window, or with `stage.bptt` (seq stage) consecutive chunks of that many frames (truncated
    back-propagation through time: the state runs through the window, gradients stop at chunk borders)."""
    size = stage.bptt if stage.bptt and stage.name == "seq" else stage.window
    return [slice(s, min(s + size, stage.window)) for s in range(0, stage.window, size)]


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


def run_stage(model: PerceptionPipeline, stage: StageConfig, stage_index: int, cfg: TrainConfig, data: Path,
              out_dir: Path, device: torch.device, d: Dist, ckpt: dict[str, Any] | None, writer: Any,
              weights: torch.Tensor | None, log: Callable[[str], None], stop_after_epochs: int | None,
              epochs_done: list[int], completed: list[str]) -> bool:
    """Train one stage from its first (or the checkpoint's) epoch to its last; False when stopped early."""
    # --- data: windows of the stage's length, shuffled per epoch from the seed; no augmentation on val
    train_ds = ClipWindows(data, window=stage.window, stride=stage.stride, split="train")
    val_ds = ClipWindows(data, window=stage.window, stride=stage.stride, split="val")
    sampler = DistributedSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=seed_of(cfg.seed, stage_index) & 0x7FFFFFFF)
    loader = DataLoader(train_ds, batch_size=stage.batch_size, sampler=sampler, num_workers=cfg.workers)
    val_loader = DataLoader(val_ds, batch_size=stage.batch_size, shuffle=False, num_workers=cfg.workers)
    augment = TemporalAugment(AugmentConfig(clutter_p=stage.clutter_p)) if cfg.augment else None

    # --- what trains; optimizer and scheduler (restored when resuming inside this stage)
    params = set_trainable(model, stage.name)
    log(describe(model, stage.name))
    optimizer = torch.optim.Adam(params, lr=stage.lr)
    metric, higher = selection_metric(stage)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max" if higher else "min", factor=0.1,
                                                           patience=stage.patience)
    start_epoch, step, best = 0, 0, None  # best: (score, epoch, model state) of the best validation epoch so far
    if ckpt is not None and ckpt["stage"] == stage.name:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        kept = load_checkpoint(out_dir / "checkpoints", BEST_FILE)
        if stage.keep_best and kept is not None and kept["stage"] == stage.name and kept["epoch"] <= start_epoch:
            best = (kept["score"], kept["epoch"], kept["model"])
        log(f"resuming stage {stage.name!r} after epoch {start_epoch}/{stage.epochs}")

    for epoch in range(start_epoch, stage.epochs):
        if stop_after_epochs is not None and epochs_done[0] >= stop_after_epochs:
            return False
        torch.manual_seed(seed_of(cfg.seed, stage_index, epoch, 1 << 20))
        sampler.set_epoch(epoch)
        set_trainable(model, stage.name)
        t0 = time.time()
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(loader, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", disable=not d.main, dynamic_ncols=True,
                   total=min(len(loader), stage.max_batches or len(loader)), leave=False)
        for b, batch in enumerate(bar):
            if stage.max_batches is not None and b >= stage.max_batches:
                break
            if stage.window == 1:
                g = torch.Generator().manual_seed(seed_of(cfg.seed, stage_index, epoch, b, d.rank, 7))
                batch = mirror_frames(batch, g) if cfg.mirror else batch
                if not stage.depth_weight:  # a zoom also changes the camera height that metric depth is learnt against
                    batch = zoom_frames(batch, g, cfg.zoom)
            x = prepare_rgb(batch["rgb"], augment, seed_of(cfg.seed, stage_index, epoch, b, d.rank)).to(device)
            batch = {k: v.to(device) for k, v in batch.items()}
            state = None
            for chunk in bptt_chunks(stage):  # one optimizer step per chunk; the state carries on, its graph does not
                loss, parts, out = stage_loss(model, stage, x[:, chunk], window_slice(batch, chunk), weights,
                                              cfg.depth_loss, state)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                average_gradients(params, d)
                optimizer.step()
                state = out["state"].detach() if stage.name == "seq" else None
                step += 1
                n += 1
                for k, v in {"total": float(loss.detach()), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                if writer is not None:
                    for k, v in {"total": float(loss.detach()), **parts}.items():
                        writer.add_scalar(f"{stage.name}/train_{k}", v, step)
        sync_buffers(model, d)

        # --- validation: loss for the scheduler, segmentation metrics, a sample picture
        model.eval()
        vsum, vn, seg_metrics, depth_metrics, image = 0.0, 0, SegmentationMetrics(), DepthMetrics(), None
        with torch.no_grad():
            for b, batch in enumerate(val_loader):
                if stage.val_batches is not None and b >= stage.val_batches:
                    break
                x = prepare_rgb(batch["rgb"], None, 0).to(device)
                batch_dev = {k: v.to(device) for k, v in batch.items()}
                loss, _, out = stage_loss(model, stage, x, batch_dev, weights, cfg.depth_loss)
                vsum, vn = vsum + float(loss), vn + 1
                if "seg_logits" in out:
                    seg_metrics.update(out["seg_logits"].argmax(2).cpu(), batch["semantic"])
                    if image is None:
                        image = sample_image(batch, out)
                if stage.depth_weight:
                    depth_metrics.update(out["depth"].flatten(0, 2).cpu(), batch["depth"].flatten(0, 1))
        val_loss = vsum / max(vn, 1)
        train_means = {k: v / max(n, 1) for k, v in sums.items()}
        miou = seg_metrics.compute()["miou"] if seg_metrics.confusion.sum() else float("nan")
        abs_rel = depth_metrics.compute()["abs_rel"]
        score = {"miou": miou, "abs_rel": abs_rel, "loss": val_loss}[metric]
        scheduler.step(score)
        lr = optimizer.param_groups[0]["lr"]
        if stage.keep_best and (best is None or is_better(score, best[0], higher)):
            best = (score, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
            if d.main:
                save_checkpoint(out_dir / "checkpoints", {"stage": stage.name, "epoch": epoch + 1, "score": score,
                                                          "model": best[2]}, (BEST_FILE,))
        if d.main:
            log(f"{stage.name} epoch {epoch + 1}/{stage.epochs}: "
                + " ".join(f"{k}={v:.4f}" for k, v in train_means.items())
                + f" val_loss={val_loss:.4f}" + ("" if math.isnan(miou) else f" val_miou={miou:.3f}")
                + ("" if math.isnan(abs_rel) else f" val_abs_rel={abs_rel:.3f}")
                + f" lr={lr:.1e} ({time.time() - t0:.1f}s)")
            if writer is not None:
                writer.add_scalar(f"{stage.name}/val_loss", val_loss, step)
                writer.add_scalar(f"{stage.name}/lr", lr, step)
                if not math.isnan(miou):
                    writer.add_scalar(f"{stage.name}/val_miou", miou, step)
                if not math.isnan(abs_rel):
                    writer.add_scalar(f"{stage.name}/val_abs_rel", abs_rel, step)
                if image is not None:
                    writer.add_image(f"{stage.name}/sample_rgb_pred_true", image, epoch, dataformats="HWC")
                writer.flush()
        last = epoch + 1 == stage.epochs
        if last and best is not None and best[1] != epoch + 1:  # the stage ends with its best validation epoch's weights
            model.load_state_dict(best[2])
            log(f"{stage.name}: keeping epoch {best[1]} (val {metric} {best[0]:.4f})")
        if d.main:
            save_checkpoint(out_dir / "checkpoints", {
                "stage": stage.name, "epoch": epoch + 1, "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "completed": completed + ([stage.name] if last else []),
                "config": json.dumps(cfg.to_dict()),
            }, (CHECKPOINT_FILE, stage_checkpoint_file(stage.name)) if last else (CHECKPOINT_FILE,))
        if d.world > 1:
            dist.barrier()
        epochs_done[0] += 1
    return True


def train(cfg: TrainConfig, data: str | Path, out_dir: str | Path, *, device: str | torch.device = "auto",
          resume: bool = False, stop_after_epochs: int | None = None,
          log: Callable[[str], None] = print) -> PerceptionPipeline:
    """Run the configured stages on the clips in `data` (split train; val drives the scheduler); returns the model.

    `resume` continues from OUT/checkpoints/last.pt. A stage list that starts after `seg` starts from
    the weights at the end of the stage before it (OUT/checkpoints/after_<stage>.pt, else last.pt). `stop_after_epochs` ends the run after
    that many epochs in this call (used to test resuming).
    """
    data, out_dir = Path(data), Path(out_dir)
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    d = setup_distributed(device)
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
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.preset, device=device)
    folder, ckpt = out_dir / "checkpoints", None
    if resume:
        ckpt = load_checkpoint(folder)
    elif names[0] != STAGE_NAMES[0]:  # start from the end of the stage before, else from the newest weights
        before = STAGE_NAMES[STAGE_NAMES.index(names[0]) - 1]
        ckpt = load_checkpoint(folder, stage_checkpoint_file(before)) or load_checkpoint(folder)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        log(f"loaded checkpoint: stage {ckpt['stage']!r}, epoch {ckpt['epoch']}")
    elif resume or names[0] != STAGE_NAMES[0]:
        log(f"no checkpoint in {folder}: starting from untrained weights")
    writer = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tb"))
    weights = None
    if cfg.class_weighted:
        weights = class_weights(ClipWindows(store, window=1, split="train")).to(device)
    completed = list(ckpt["completed"]) if (ckpt is not None and resume) else []
    epochs_done = [0]
    try:
        for i, stage in enumerate(cfg.stages):
            if stage.name in completed:
                log(f"stage {stage.name!r} already complete in the checkpoint; skipping")
                continue
            stage_ckpt = ckpt if (resume and ckpt is not None and ckpt["stage"] == stage.name) else None
            if not run_stage(model, stage, STAGE_NAMES.index(stage.name), cfg, data, out_dir, device, d, stage_ckpt,
                             writer, weights, log, stop_after_epochs, epochs_done, completed):
                log(f"stopped after {epochs_done[0]} epoch(s) as asked; continue with --resume")
                break
            completed.append(stage.name)
    finally:
        if writer is not None:
            writer.close()
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return model
