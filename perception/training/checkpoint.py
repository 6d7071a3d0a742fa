"""Atomic per-epoch checkpoints: written to a temporary file then renamed, loaded with `weights_only=True`.

`last.pt` is overwritten every epoch; the end of each stage (its best validation epoch's weights) is also kept
as `after_<stage>.pt`, so a later stage can be trained again from the same starting point. `best.pt` holds the
current stage's best epoch so far (model weights only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "last.pt"
BEST_FILE = "best.pt"


def stage_checkpoint_file(stage: str) -> str:
    """The file that keeps the checkpoint taken at the end of `stage`."""
    return f"after_{stage}.pt"


def save_checkpoint(folder: str | Path, state: dict[str, Any], names: tuple[str, ...] = (CHECKPOINT_FILE,)) -> Path:
    """Write `state` (tensors, dicts, numbers, strings) to each of folder/`names` atomically; a kill never
    leaves half a file. Returns the first path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    return folder / names[0]


def load_checkpoint(folder: str | Path, name: str = CHECKPOINT_FILE) -> dict[str, Any] | None:
    """The checkpoint folder/`name`, or None when there is none (no pickled code is ever executed)."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
