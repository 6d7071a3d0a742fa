"""Weights between a stage's start and its end, scored on the validation town: for choosing `--interpolate`.

    python benchmarks/interpolation_sweep.py --start runs/v7/checkpoints/after_ego.pt --end runs/v7/weights \
        --data DIR --fractions 0,0.3,0.5,0.7,1 --json sweep.json --save runs/v7_sweep

For each fraction F, the weights `start + F x (end - start)` (what `train_perception --interpolate` makes at
a stage's end, `perception.training.loop.interpolate_weights`) are scored on the validation split of `DIR`
(the training run's recordings), so that the fraction is chosen without the test town: temporal and
per-frame mIoU on its clips of at most `--clip-frames` frames, and on its long drives (the longer
recordings) overall and per block, with the number of blocks where the temporal model's lead has a 95%
interval above 0, and where the memory's update gate sits on the clips. `--start` and `--end` are weights
folders or training checkpoints (`OUT/checkpoints/*.pt`; two checkpoints score the network of their run's
preset, and `--fractions 0,1` scores a stage's start and end); `--save DIR` also writes each fraction's
weights to DIR/F<fraction> (for `evaluate_perception`). The default recipe's recordings hold 4 validation
drives, too few to tell two recipes apart by less than about 0.02 mIoU; `--val-drives N` adds N episode drives
of the validation town (recorded once, then reused).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from carla_gym.training_data import record_drives
from perception.data import ClipStore
from perception.models import PerceptionPipeline, build_model
from perception.training.checkpoint import load_checkpoint, restore_model
from perception.training.config import network_config
from perception.training.evaluation import evaluate, load_clip, predict_clip
from perception.training.long_drives import FEW_DRIVES, FEW_DRIVES_NOTE, LongDriveConfig, evaluate_long_drives
from perception.training.loop import interpolate_weights, snapshot
from perception.weights import load_weights, read_weights_config, save_weights


def state_of(path: Path, model: PerceptionPipeline) -> dict[str, torch.Tensor]:
    """The weights in a weights folder or a training checkpoint, checked against `model`'s network."""
    if path.is_dir():
        return snapshot(load_weights(path, model=model))
    ckpt = load_checkpoint(path.parent, path.name)
    if ckpt is None:
        raise SystemExit(f"error: {path} does not exist")
    restore_model(model, ckpt, path)
    return snapshot(model)


def memory_gates(model: PerceptionPipeline, clips: list) -> dict[str, dict[str, float]]:
    """Where the ConvGRU's update gate z sits (`h' = (1 - z) h + z n`) over `clips` run in temporal mode: on each
    clip's first frame (the zero state: per-frame mode) and from its 6th frame on. Per part: mean z, the shares of
    z above 0.95 (`z_near_1`: the memory left out) and below 0.05 (`z_near_0`: the frame left out), and the mean |h'|
    the heads read (`state_abs_mean`)."""
    cell = model.geometry_filter.convgru
    steps: list[tuple[float, float, float, float]] = []

    def record(module: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        x = inputs[0]
        h = inputs[1] if len(inputs) > 1 and inputs[1] is not None else cell.initial_state(x)
        z, _ = cell.gates(x, h)
        steps.append(
            (
                z.mean().item(),
                (z > 0.95).float().mean().item(),
                (z < 0.05).float().mean().item(),
                out.abs().mean().item(),
            )
        )

    handle = cell.register_forward_hook(record)
    firsts, later = [], []
    try:
        with torch.no_grad():
            for clip in clips:
                steps.clear()
                predict_clip(model, load_clip(clip)["rgb"].float() / 255.0, "temporal", torch.device("cpu"))
                firsts.append(steps[0])
                later.extend(steps[5:])
    finally:
        handle.remove()
    keys = ("z_mean", "z_near_1", "z_near_0", "state_abs_mean")
    return {
        part: dict(zip(keys, torch.tensor(rows).mean(0).tolist(), strict=True))
        for part, rows in (("first_frame", firsts), ("frames_6_on", later))
    }


def score(model: PerceptionPipeline, clips: list, drives: list) -> dict[str, dict[str, Any]]:
    """Both modes' mIoU on the short clips and on the drives, the drives' blocks with a sure temporal lead, and the
    memory's update gate on the clips (`memory_gates`)."""
    clean = evaluate(model, clips, corruptions=())["results"]["clean"]
    section = evaluate_long_drives(model, drives)
    blocks = section["blocks"]
    return {
        "clips": {m: clean[m]["miou"] for m in ("per_frame", "temporal")},
        "drives": {
            **{m: section["overall"][m]["miou"] for m in ("per_frame", "temporal")},
            "blocks": len(blocks),
            "blocks_lead_above_0": sum(b["temporal_vs_per_frame"]["miou_ci95"][0] > 0 for b in blocks),
        },
        "memory_gates": memory_gates(model, clips),
    }


def parse_fractions(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]; a ValueError that says what is wrong unless each is a number in [0, 1]."""
    try:
        fractions = [float(f) for f in text.split(",")]
    except ValueError:
        raise ValueError("not comma-separated numbers") from None
    if not all(0.0 <= f <= 1.0 for f in fractions):
        raise ValueError("each must be in [0, 1]")
    return fractions


def validation_recordings(data: Path, clip_frames: int, val_drives: int, drive_frames: int) -> tuple[list, list]:
    """The val split of `data`: its clips (at most `clip_frames` frames) and its longer drives, with `val_drives`
    more episode drives of `drive_frames` frames on the validation town, recorded (or reused) at the recordings'
    size in the drive cache (`carla_gym.training_data.record_drives`): a few drives decide little."""
    recordings = ClipStore(data).clips(split="val")
    clips = [c for c in recordings if len(c) <= clip_frames]
    drives = [c for c in recordings if len(c) > clip_frames]
    if val_drives and recordings:
        meta = recordings[0].meta
        more = LongDriveConfig(drives=val_drives, frames=drive_frames, block=drive_frames)  # recording: no blocks
        drives += record_drives(more, (meta.height, meta.width), meta.backend, split="val")
    return clips, drives


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", type=Path, required=True, help="weights or checkpoint the stage started from")
    p.add_argument("--end", type=Path, required=True, help="weights or checkpoint the stage trained")
    p.add_argument("--data", type=Path, required=True, help="the training run's recordings (its val split is used)")
    p.add_argument("--fractions", default="0,0.3,0.5,0.7,1", help="comma-separated, each in [0, 1]")
    p.add_argument("--clip-frames", type=int, default=20, help="recordings up to this long are clips, longer drives")
    p.add_argument(
        "--val-drives",
        type=int,
        default=0,
        help="also score this many episode drives of the validation town, recorded (or reused) in the drive cache",
    )
    p.add_argument("--val-drive-frames", type=int, default=300, help="frames per drive of --val-drives (default 300)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--save", type=Path, help="also write each fraction's weights folder under this folder")
    args = p.parse_args()
    try:
        fractions = parse_fractions(args.fractions)
    except ValueError as e:
        p.error(f"--fractions {args.fractions}: {e}")

    folder = next((x for x in (args.end, args.start) if x.is_dir()), None)
    if folder is not None:
        model, config = load_weights(folder).eval(), read_weights_config(folder)
    elif args.save:
        p.error("--save needs --start or --end to be a weights folder: its config.json names the input size")
    else:  # two checkpoints: the network of the run's preset, with its architecture changes
        ckpt = load_checkpoint(args.end.parent, args.end.name)
        if ckpt is None:
            p.error(f"{args.end} does not exist")
        run = json.loads(ckpt["config"])
        model, config = build_model(network_config(run["preset"], run.get("architecture", []))).eval(), {}
    start, end = state_of(args.start, model), state_of(args.end, model)
    try:
        clips, drives = validation_recordings(args.data, args.clip_frames, args.val_drives, args.val_drive_frames)
    except ValueError as e:
        p.error(str(e))
    if not clips or not drives:
        p.error(f"{args.data}: the val split needs clips of at most {args.clip_frames} frames and longer drives")

    results = {}
    for f in fractions:
        model.load_state_dict(interpolate_weights(start, end, f))
        if args.save:
            save_weights(
                model,
                args.save / f"F{f:g}",
                training_data=config.get("training_data"),
                input_size=tuple(config["input_size"]),
                extra={"interpolated": {"start": str(args.start), "end": str(args.end), "fraction": f}},
            )
        results[f"{f:g}"] = score(model, clips, drives)
        print(f"F={f:g}: " + json.dumps(results[f"{f:g}"]), flush=True)

    if args.json:
        out = {
            "start": str(args.start),
            "end": str(args.end),
            "data": str(args.data),
            "val_clips": len(clips),
            "val_drives": len(drives),
            "val_drives_recorded": args.val_drives,
            "blocks_note": f"blocks_lead_above_0 {FEW_DRIVES_NOTE}" if len(drives) < FEW_DRIVES else None,
            "fractions": results,
            "command": config.get("extra", {}).get("command"),
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
