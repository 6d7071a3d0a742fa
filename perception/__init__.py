"""Temporal perception for driving: CARLA conventions, models, streaming inference, metrics, training.

This package is the bottom layer: it never imports `carla_gym` or `agents`. The model names
(`build_model`, `TemporalPerception`, `save_weights`, ...) load lazily, so code that only needs
the conventions does not pay for importing torchvision.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import conventions
from .conventions import CLASS_NAMES, NUM_CLASSES, colorize

_LAZY = {
    "PRESETS": "models",
    "PerceptionPipeline": "models",
    "PipelineState": "models",
    "PresetConfig": "models",
    "build_model": "models",
    "PerceptionOutput": "streaming",
    "TemporalPerception": "streaming",
    "WeightsError": "weights",
    "load_weights": "weights",
    "read_weights_config": "weights",
    "save_weights": "weights",
}

if TYPE_CHECKING:
    from .models import PRESETS, PerceptionPipeline, PipelineState, PresetConfig, build_model
    from .streaming import PerceptionOutput, TemporalPerception
    from .weights import WeightsError, load_weights, read_weights_config, save_weights


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CLASS_NAMES", "NUM_CLASSES", "colorize", "conventions", *sorted(_LAZY)]
