"""Which parts of the `PerceptionPipeline` train in each curriculum stage (the rest is frozen)."""

from __future__ import annotations

from torch import nn

from .config import STAGE_NAMES

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
ALL_PARTS = (
    "geometry_filter.backbone",
    "geometry_filter.proj",
    "geometry_filter.convgru",
    "geometry_filter.seg_head",
    "geometry_filter.depth_decoder",
    "ego_motion_filter",
)


def check_stages(names: list[str]) -> list[str]:
    """Validate a stage list (unknown names raise `ValueError` naming them); returns it in curriculum order."""
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; known: {', '.join(STAGE_NAMES)}")
    return [n for n in STAGE_NAMES if n in names]


def set_trainable(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """Freeze everything, unfreeze the stage's parts; returns the trainable parameters.

    Frozen parts are put in eval mode too, so their BatchNorm statistics stay fixed.
    """
    model.requires_grad_(False)
    model.eval()
    params: list[nn.Parameter] = []
    for path in TRAINABLE[stage]:
        part = model.get_submodule(path)
        part.requires_grad_(True)
        part.train()
        params.extend(part.parameters())
    return params


def describe(model: nn.Module, stage: str) -> str:
    """A line per part saying whether it trains in `stage`, with its parameter count (printed at stage start)."""
    lines = [f"stage {stage!r}:"]
    for path in ALL_PARTS:
        n = sum(p.numel() for p in model.get_submodule(path).parameters())
        lines.append(f"  {'train ' if path in TRAINABLE[stage] else 'frozen'}  {path:<32} {n / 1e6:7.3f}M")
    return "\n".join(lines)
