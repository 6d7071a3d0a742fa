"""Checkpoints of a DAgger run (`agents.imitation`): after every round, what the run needs to go on from there.

`OUT/checkpoints/` holds one labels file per round (`round_<r>.npz`: the observations the round visited, the
autopilot's actions there and the observed returns), the policy and its optimizer after the round's fit
(`policy_<r>.pt`, tensors only, loaded with `weights_only=True`, so no pickled code runs) and `state.json`,
written last, which says how many rounds are done and with which settings. A run killed during a round goes
on from the last round `state.json` counts; that round's files are written again.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from perception.atomic_files import write_atomic

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
OBS_PREFIX = "obs."

RoundData = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]
"""One round's observations (a dict of arrays), autopilot labels and discounted returns."""


class ImitationCheckpointError(ValueError):
    """A checkpoint that cannot be resumed: damaged, or from a run with other settings (the message says which)."""


@dataclass
class ImitationState:
    """How far a DAgger run got: rounds done, env steps driven, wall-clock seconds over all its calls, and the
    settings it runs with (a resumed run must have the same)."""

    rounds_done: int
    env_steps: int
    seconds: float
    settings: dict[str, Any]


def has_checkpoint(out: Path) -> bool:
    """Whether `out` holds a DAgger run's checkpoint."""
    return (out / CHECKPOINT_DIR / STATE_FILE).is_file()


def save_round(out: Path, data: RoundData, policy: BasePolicy, state: ImitationState) -> None:
    """Write the round that `state` has just counted as done: its labels, the policy and optimizer after its fit,
    then `state.json`; the policy file of the round before is removed once `state.json` names the new one."""
    folder, r = out / CHECKPOINT_DIR, state.rounds_done
    obs, labels, returns = data
    arrays: dict[str, Any] = {"labels": labels, "returns": returns, **{f"{OBS_PREFIX}{k}": v for k, v in obs.items()}}

    def write_labels(path: Path) -> None:
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)

    write_atomic(folder / f"round_{r}.npz", write_labels)
    tensors = {"policy": policy.state_dict(), "optimizer": policy.optimizer.state_dict()}
    write_atomic(folder / f"policy_{r}.pt", lambda p: torch.save(tensors, p))
    write_atomic(folder / STATE_FILE, lambda p: p.write_text(json.dumps(asdict(state), indent=2) + "\n"))
    (folder / f"policy_{r - 1}.pt").unlink(missing_ok=True)


def settings_differences(
    stored: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any] | None = None
) -> list[str]:
    """One line per setting that differs between a checkpoint's run and this one. A setting the checkpoint
    does not record (an option added since it was written) matches when it is at its value in `defaults`."""
    now, defaults = (json.loads(json.dumps(d or {}, default=str)) for d in (now, defaults))  # as stored JSON holds them
    return [
        f"{k}: {stored.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in sorted({*stored, *now})
        if stored.get(k) != now.get(k) and not (k not in stored and k in defaults and now.get(k) == defaults[k])
    ]


def read_state(out: Path, settings: dict[str, Any], defaults: dict[str, Any] | None = None) -> ImitationState:
    """The state of the run in `out`; raises `ImitationCheckpointError` when it is unreadable or the run had
    other settings (one line per difference; see `settings_differences` for `defaults`)."""
    path = out / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        raise ImitationCheckpointError(f"no DAgger checkpoint to resume in {out} ({path} does not exist)")
    try:
        state = ImitationState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ImitationCheckpointError(f"{path}: not a DAgger checkpoint's state ({err})") from None
    if diffs := settings_differences(state.settings, settings, defaults):
        raise ImitationCheckpointError(
            f"{out} was trained with other settings; resume with the same ones or train into a new --out:\n  "
            + "\n  ".join(diffs)
        )
    return state


def restore(out: Path, state: ImitationState, policy: BasePolicy) -> list[RoundData]:
    """Every finished round's labels, with the policy and optimizer of the last one restored into `policy`;
    raises `ImitationCheckpointError` naming a damaged or missing file."""
    folder = out / CHECKPOINT_DIR
    rounds = [read_round(folder / f"round_{r}.npz") for r in range(1, state.rounds_done + 1)]
    path = folder / f"policy_{state.rounds_done}.pt"
    try:
        tensors = torch.load(path, map_location=policy.device, weights_only=True)
        policy.load_state_dict(tensors["policy"])
        policy.optimizer.load_state_dict(tensors["optimizer"])
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
        raise ImitationCheckpointError(
            f"{path}: damaged or not this run's policy ({type(err).__name__}: {err})"
        ) from None
    return rounds


def read_round(path: Path) -> RoundData:
    """A round's labels file, or `ImitationCheckpointError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            obs = {k.removeprefix(OBS_PREFIX): f[k] for k in f.files if k.startswith(OBS_PREFIX)}
            return obs, f["labels"], f["returns"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ImitationCheckpointError(f"{path}: damaged or missing ({type(err).__name__}: {err})") from None
