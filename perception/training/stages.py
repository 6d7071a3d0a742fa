"""Which parts of the `PerceptionPipeline` train in each curriculum stage (the rest is frozen)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import STAGE_NAMES, StageConfig

# Sub-modules that train per stage, as attribute paths on the pipeline.
TRAINABLE: dict[str, tuple[str, ...]] = {
    "seg": ("geometry_filter.backbone", "geometry_filter.proj", "geometry_filter.convgru", "geometry_filter.seg_head"),
    "depth": (
        "geometry_filter.backbone",
        "geometry_filter.proj",
        "geometry_filter.convgru",
        "geometry_filter.seg_head",
        "geometry_filter.depth_decoder",
    ),
    "ego": ("ego_motion_filter",),
    "seq": (
        "geometry_filter.convgru",
        "geometry_filter.seg_head",
        "geometry_filter.depth_decoder",
        "ego_motion_filter",
    ),
}
TRAINABLE["drive"] = TRAINABLE["seq"]
ALL_PARTS = (
    "geometry_filter.backbone",
    "geometry_filter.proj",
    "geometry_filter.convgru",
    "geometry_filter.seg_head",
    "geometry_filter.depth_decoder",
    "ego_motion_filter",
)
# The temporal memory, whose learning rate a stage may scale (`StageConfig.memory_lr`).
MEMORY = "geometry_filter.convgru"


def check_stages(names: list[str]) -> list[str]:
    """Validate a stage list (unknown names raise `ValueError` naming them); returns it in curriculum order."""
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; known: {', '.join(STAGE_NAMES)}")
    return [n for n in STAGE_NAMES if n in names]


# Parts trained by one loss only: they stay frozen in a stage that gives that loss no weight (e.g. a sequence stage
# without the pose loss keeps the ego-motion filter that the ego stage trained).
LOSS_OF_PART: dict[str, str] = {"ego_motion_filter": "pose_weight", "geometry_filter.depth_decoder": "depth_weight"}


def trainable_parts(stage: StageConfig | str) -> tuple[str, ...]:
    """The sub-modules that train in `stage`: the stage's `TRAINABLE` parts whose loss has weight in it, less the
    memory when its `memory_lr` is 0 (a bare stage name: all of that stage's parts)."""
    if isinstance(stage, str):
        return TRAINABLE[stage]
    return tuple(
        p
        for p in TRAINABLE[stage.name]
        if (p not in LOSS_OF_PART or getattr(stage, LOSS_OF_PART[p])) and (p != MEMORY or stage.memory_lr)
    )


def set_trainable(model: nn.Module, stage: StageConfig | str) -> list[nn.Parameter]:
    """Freeze everything, unfreeze the stage's parts (`trainable_parts`); returns the trainable parameters.

    Frozen parts are put in eval mode too, so their BatchNorm statistics stay fixed.
    """
    model.requires_grad_(False)
    model.eval()
    params: list[nn.Parameter] = []
    for path in trainable_parts(stage):
        part = model.get_submodule(path)
        part.requires_grad_(True)
        part.train()
        params.extend(part.parameters())
    return params


def param_groups(model: nn.Module, stage: StageConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for `stage`: every trainable part at the stage's `lr`, except the memory at
    `memory_lr` times it, in a second group, when that fraction is not 1. The first group is at the stage's rate, the
    one the log reports; a schedule scales both alike."""
    parts = trainable_parts(stage)
    separate = stage.memory_lr != 1 and MEMORY in parts
    main = [p for path in parts if not (separate and path == MEMORY) for p in model.get_submodule(path).parameters()]
    groups: list[dict[str, Any]] = [{"params": main, "lr": stage.lr}]
    if separate:
        groups.append({"params": list(model.get_submodule(MEMORY).parameters()), "lr": stage.lr * stage.memory_lr})
    return groups


def describe(model: nn.Module, stage: StageConfig | str) -> str:
    """A line per part saying whether it trains in `stage`, with its parameter count and, for a memory at another
    rate, that rate (printed at stage start)."""
    parts = trainable_parts(stage)
    name, scale = (stage, 1.0) if isinstance(stage, str) else (stage.name, stage.memory_lr)
    lines = [f"stage {name!r}:"]
    for path in ALL_PARTS:
        n = sum(p.numel() for p in model.get_submodule(path).parameters())
        rate = f"  at {scale:g}x the stage's rate" if path == MEMORY and path in parts and scale != 1 else ""
        lines.append(f"  {'train ' if path in parts else 'frozen'}  {path:<32} {n / 1e6:7.3f}M{rate}")
    return "\n".join(lines)
