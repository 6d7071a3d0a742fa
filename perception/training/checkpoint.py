"""Atomic per-epoch checkpoints: written to a temporary file then renamed, loaded with `weights_only=True`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "last.pt"


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, dicts, numbers, strings) to folder/last.pt atomically; a kill never leaves half a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The last checkpoint in `folder`, or None when there is none (no pickled code is ever executed)."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
