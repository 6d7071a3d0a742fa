"""What the ego-motion filter reads: the pair of frames it is given, finer features, standing windows.

Trains a fresh ego-motion filter the way the curriculum's ego stage does (windows of 6 frames every 5, batches
of 4, the training augmentation, the pose L1, the geometry filter of `--weights` frozen) for each variant, then
scores, beside the weights' own filter, the motion it reports for two identical frames and its ego-motion error
per motion state (standing, starting, moving) on the validation town's episode
and approach drives, the drives `benchmarks/approach_drives.py` records (cached). A variant is
`DIFFERENCE,DETAIL,HOLD`: `pair` or `difference` (`PresetConfig.motion_difference`), the backbone feature read
beside the embedding or `none` (`motion_detail`), and the share of windows that stop or start (`hold_p`).

    python benchmarks/ego_motion_input.py --data CLIPS --weights runs/perception/weights
    python benchmarks/ego_motion_input.py --data CLIPS --variants pair,none,0.25 difference,s8,0.25 --json out.json

CLIPS is a training run's recordings (its train split is read). Use the validation town to choose; the
test town only to report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from carla_gym.datasets import FROM_FIRST_TICK
from carla_gym.training_data import record_drives
from perception.data import AugmentConfig, ClipStore, ClipWindows, TemporalAugment
from perception.models import PerceptionPipeline, build_model
from perception.provenance import command_line
from perception.training.config import StageConfig
from perception.training.long_drives import LongDriveConfig, evaluate_long_drives
from perception.training.loop import prepare_rgb, seed_of, stage_loss, window_inputs
from perception.weights import load_weights, weights_record

DEFAULT_VARIANTS = ("pair,none,0.25", "difference,none,0.25", "difference,s8,0", "difference,s8,0.25")


def parse_variant(text: str) -> tuple[bool, str | None, float]:
    """`difference,s8,0.25` -> (True, "s8", 0.25)."""
    try:
        pairing, detail, hold = text.split(",")
        if pairing not in ("pair", "difference") or not 0.0 <= float(hold) <= 1.0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: expected PAIRING,DETAIL,HOLD, e.g. difference,s8,0.25 (PAIRING pair or difference, "
            "DETAIL a backbone feature or none, HOLD a share in [0, 1])"
        ) from None
    return pairing == "difference", None if detail == "none" else detail, float(hold)


def train_filter(
    weights: Path, data: Path, difference: bool, detail: str | None, hold: float, epochs: int, batches: int, seed: int
) -> PerceptionPipeline:
    """A pipeline with the geometry filter of `weights` and an ego-motion filter trained ego-stage style."""
    torch.manual_seed(seed)
    model = build_model("lite", motion_difference=difference, motion_detail=detail)
    model.geometry_filter.load_state_dict(load_weights(weights).geometry_filter.state_dict())
    model.geometry_filter.requires_grad_(False)
    stage = StageConfig("ego", epochs, 4, window=6, stride=5, seg_weight=0.0, pose_weight=1.0, hold_p=hold)
    windows = ClipWindows(ClipStore(data).clips(split="train"), window=stage.window, stride=stage.stride)
    augment = TemporalAugment(AugmentConfig(clutter_p=stage.clutter_p))
    optimizer = torch.optim.Adam(model.ego_motion_filter.parameters(), lr=stage.lr)
    for epoch in range(epochs):
        model.train()
        model.geometry_filter.eval()
        order = torch.Generator().manual_seed(seed_of(seed, epoch))
        loader = torch.utils.data.DataLoader(windows, batch_size=stage.batch_size, shuffle=True, generator=order)
        for b, batch in enumerate(tqdm(loader, total=min(batches, len(loader)), desc=f"epoch {epoch + 1}/{epochs}")):
            if b >= batches:
                break
            x, batch = window_inputs(batch, augment, hold, seed_of(seed, epoch, b), seed_of(seed, epoch, b, 11))
            loss, _, _ = stage_loss(model, stage, x, batch, None, "silog")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def identical_pair_motion(model: PerceptionPipeline, frames: torch.Tensor) -> float:
    """Mean translation (metres) the ego-motion filter reports, from a fresh state, for each of `frames`
    (N, H, W, 3 uint8) paired with itself: a camera that did not move."""
    x = prepare_rgb(frames.permute(0, 3, 1, 2)[:, None], None, 0)
    embedding = model.geometry_filter(x)["embeddings"][:, 0]
    pose6 = model.ego_motion_filter.step(embedding, embedding)["pose6"]
    return float(pose6[:, :3].norm(dim=1).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a training run's recordings (its train split is read)")
    p.add_argument("--weights", type=Path, default=Path("docs/results/experiments/weights/lite_v9"))
    p.add_argument(
        "--variants",
        type=parse_variant,
        nargs="+",
        default=[parse_variant(v) for v in DEFAULT_VARIANTS],
        help=f"PAIRING,DETAIL,HOLD each (default: {' '.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batches", type=int, default=490, help="batches per epoch (the ego stage's epoch)")
    p.add_argument("--drives", type=int, default=10, help="validation drives of each kind (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not (args.weights / "config.json").is_file():
        p.error(f"--weights {args.weights}: not a weights folder (no config.json)")
    if not args.data.is_dir():
        p.error(f"--data {args.data}: no such folder")
    config = LongDriveConfig(drives=args.drives, frames=300)
    drives = {kind: record_drives(config, (128, 256), split="val", drive=kind) for kind in FROM_FIRST_TICK}
    still = torch.stack([torch.from_numpy(c.frame(i)["rgb"]) for c in drives["episode"] for i in range(0, len(c), 30)])
    results: list[dict[str, Any]] = []
    for variant in [None, *args.variants]:  # None: the weights' own ego-motion filter, as trained
        if variant is None:
            name, start, model = f"{args.weights} as trained", time.perf_counter(), load_weights(args.weights).eval()
        else:
            difference, detail, hold = variant
            name = f"{'difference' if difference else 'pair'},{detail or 'none'},{hold:g}"
            start = time.perf_counter()
            model = train_filter(
                args.weights, args.data, difference, detail, hold, args.epochs, args.batches, args.seed
            )
        row: dict[str, Any] = {"variant": name, "train_s": round(time.perf_counter() - start)}
        row["identical_frames_m"] = identical_pair_motion(model, still)
        for kind in FROM_FIRST_TICK:
            ego = evaluate_long_drives(model, drives[kind])["ego_motion"]
            row[kind] = {state: ego[state]["temporal"]["translation_error_m"] for state in ego}
        results.append(row)
        print(
            f"{name}: identical frames {row['identical_frames_m']:.3f} m  "
            + "  ".join(
                f"{k} " + " ".join(f"{s} {'-' if v is None else f'{v:.4f}'}" for s, v in row[k].items())
                for k in FROM_FIRST_TICK
            ),
            flush=True,
        )
    if args.json:
        command = command_line()
        args.json.write_text(
            json.dumps({"command": command, **weights_record(args.weights), "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
