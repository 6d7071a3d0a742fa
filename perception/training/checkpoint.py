"""Atomic per-epoch checkpoints: written to a temporary file then renamed, loaded with `weights_only=True`.

`last.pt` is overwritten every epoch; the end of each stage (its best validation epoch's weights) is also kept
as `after_<stage>.pt`, so a later stage can be trained again from the same starting point. `best.pt` holds the
current stage's best epoch so far (model weights only). A file that cannot be read, lacks an entry or holds
tensors of another network raises `CheckpointError` naming it; nothing is deleted. Every training checkpoint
keeps the run's config and an identity of its clips (`data_identity`), so resuming with other settings or other
data is refused with the list of differences (`check_resume`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from perception.atomic_files import write_atomic
from perception.data import ClipStore
from perception.weights import WeightsError, check_state_dict

from .config import TrainConfig
from .errors import CheckpointError, TrainingError

CHECKPOINT_FILE = "last.pt"
BEST_FILE = "best.pt"
# What each kind of checkpoint holds: `best.pt` the best epoch's weights, the others the whole training state.
BEST_KEYS = ("stage", "epoch", "score", "model")
STATE_KEYS = ("stage", "epoch", "step", "model", "optimizer", "scheduler", "completed")


def stage_checkpoint_file(stage: str) -> str:
    """The file that keeps the checkpoint taken at the end of `stage`."""
    return f"after_{stage}.pt"


def damaged(path: Path, problem: str) -> CheckpointError:
    """The error for an unusable checkpoint file, with what to do about it."""
    return CheckpointError(
        f"checkpoint {path}: {problem}. Delete that file (training then redoes what it held) or train into a new --out"
    )


def save_checkpoint(folder: str | Path, state: dict[str, Any], names: tuple[str, ...] = (CHECKPOINT_FILE,)) -> Path:
    """Write `state` (tensors, dicts, numbers, strings) to each of folder/`names` atomically; a kill never
    leaves half a file. Returns the first path."""
    for name in names:
        write_atomic(Path(folder) / name, lambda p: torch.save(state, p))
    return Path(folder) / names[0]


def load_checkpoint(folder: str | Path, name: str = CHECKPOINT_FILE) -> dict[str, Any] | None:
    """The checkpoint folder/`name`, or None when there is none (no pickled code is ever executed).

    A file that torch cannot read, or that lacks one of the entries its kind holds, raises `CheckpointError`."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message suggests weights_only=False: never for a file like this
        raise damaged(
            path, "it is damaged or not a checkpoint of this project (not only tensors and plain data)"
        ) from None
    except EOFError:
        raise damaged(path, "the file is empty or cut short") from None
    except (RuntimeError, KeyError, ValueError, OSError, IndexError, TypeError, AttributeError) as err:  # damaged zip
        first = str(err).split(". ")[0].strip() if isinstance(err, RuntimeError) else type(err).__name__
        raise damaged(path, f"it is damaged or not a checkpoint of this project ({first})") from None
    keys = BEST_KEYS if name == BEST_FILE else STATE_KEYS
    if not isinstance(state, dict):
        raise damaged(path, f"it holds a {type(state).__name__}, not a checkpoint")
    missing = [k for k in keys if k not in state]
    if missing:
        raise damaged(path, f"it lacks the entries {', '.join(missing)}")
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise damaged(path, "its 'model' entry is not a dict of tensors")
    if not isinstance(state["stage"], str) or not isinstance(state["epoch"], int):
        raise damaged(path, f"its 'stage' and 'epoch' are {state['stage']!r} and {state['epoch']!r}")
    if "completed" in keys and not isinstance(state["completed"], list):
        raise damaged(path, f"its 'completed' entry is {state['completed']!r}, not a list of stages")
    return state


def run_seconds(folder: str | Path) -> float | None:
    """The wall time of the run whose checkpoints are in `folder` at its last checkpoint, summed over the calls of a
    resumed run; None without a checkpoint or for one written before checkpoints kept it."""
    state = load_checkpoint(folder)
    return None if state is None or "seconds" not in state else float(state["seconds"])


def restore_model(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load a checkpoint's model weights into `model`; tensors of another network raise `CheckpointError`."""
    try:
        check_state_dict(model.state_dict(), state["model"], str(path))
    except WeightsError as err:
        raise damaged(Path(path), f"its weights are not those of this network ({err})") from None
    model.load_state_dict(state["model"])


def data_identity(store: ClipStore) -> dict[str, Any]:
    """What a run trains on, for its checkpoints: the root, the clip count and a digest of every clip's
    folder (relative to the root) and meta.json, so the same clips under another root count as the same data."""
    digest = hashlib.sha256()
    for clip in store.clips():
        digest.update(f"{clip.path.relative_to(store.root)}\n{clip.meta.to_json()}\n".encode())
    return {"root": str(store.root.resolve()), "clips": len(store), "digest": digest.hexdigest()}


def check_resume(ckpt: dict[str, Any], cfg: TrainConfig, data: dict[str, Any], path: Path) -> None:
    """Refuse to resume the run of checkpoint `path` with other settings or other clips than it was started with."""
    diffs = []
    if "config" in ckpt:
        try:
            diffs += cfg.differences(json.loads(ckpt["config"]))
        except (TypeError, ValueError, AttributeError) as err:
            raise damaged(path, f"its stored config is unreadable ({err})") from None
    stored = ckpt.get("data")
    if isinstance(stored, dict) and stored.get("digest") != data["digest"]:
        diffs.append(
            f"data: {stored.get('clips')} clips in {stored.get('root')} stored vs "
            f"{data['clips']} clips in {data['root']} now (not the same clips)"
        )
    if diffs:
        raise TrainingError(
            f"cannot resume the run of {path}: it was started with other settings "
            "(resume with the same ones, or start a new run in another --out):\n  " + "\n  ".join(diffs)
        )
