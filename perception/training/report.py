"""The evaluation report on disk: report.json and pictures/ of a model on a list of clips.

`write_report` evaluates both modes (`evaluation.evaluate`), draws the pictures of the first clip
(`pictures.write_pictures`), optionally scores long drives (`long_drives.evaluate_long_drives`) and writes
OUT/report.json atomically; `report_text` is the report's tables for a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from perception.atomic_files import write_atomic
from perception.data import CORRUPTIONS, Clip
from perception.portable_paths import portable_path

from .evaluation import evaluate, summary_table
from .long_drives import LongDriveConfig, evaluate_long_drives, long_drive_table
from .pictures import write_pictures

if TYPE_CHECKING:
    from perception.models.pipeline import PerceptionPipeline

MODES_TEXT = {
    "per_frame": "the same weights with the recurrent state reset every frame (baseline)",
    "temporal": "recurrent state carried through each clip",
}


def write_report(
    model: PerceptionPipeline,
    clips: list[Clip],
    out: Path,
    device: torch.device,
    seed: int = 0,
    corruptions: tuple[str, ...] | None = None,
    weights_config: dict | None = None,
    long_drives: list[Clip] | None = None,
    drive_config: LongDriveConfig | None = None,
) -> dict[str, Any]:
    """Evaluate on `clips`, write out/report.json and out/pictures/ (from the first clip); returns the report.

    `corruptions` None means every corruption, () clean clips only. `weights_config` is the report's
    description of the weights (default: the model's preset, architecture and class count). With
    `long_drives` (episode-style drives) the report gains a `long_drives` section
    (`evaluate_long_drives`, blocks and motion-state thresholds from `drive_config`).
    """
    out = Path(out)

    def pictures(i: int, item: dict, preds: dict) -> None:
        if i == 0:
            write_pictures(item, preds, out / "pictures")

    evaluation = evaluate(
        model,
        clips,
        device=device,
        corruptions=CORRUPTIONS if corruptions is None else corruptions,
        seed=seed,
        on_clip=pictures,
    )
    config = weights_config or {
        "preset": model.config.name,
        "architecture": model.config.to_dict(),
        "num_classes": model.num_classes,
    }
    report = {
        "weights_config": config,
        "clips": [portable_path(c.path) for c in clips],
        "modes": dict(MODES_TEXT),
        **evaluation,
    }
    if long_drives:
        dc = drive_config or LongDriveConfig()
        report["long_drives"] = evaluate_long_drives(
            model,
            long_drives,
            block=dc.block,
            device=device,
            seed=seed,
            standing_m=dc.standing_m,
            starting_frames=dc.starting_frames,
        )
    write_atomic(out / "report.json", lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    return report


def report_text(report: dict[str, Any]) -> str:
    """The report's tables: both modes per condition with the temporal lead, and the long drives when present."""
    text = summary_table(report["results"], report["temporal_vs_per_frame"])
    if "long_drives" in report:
        text += "\n" + long_drive_table(report["long_drives"])
    return text
