"""Driving agents on perception features: SB3 feature extractors, PPO training, leaderboard-style evaluation.

`agents.load_policy(folder)` rebuilds a saved driving policy (JSON + safetensors, no pickle) with a
`predict(obs)` like Stable-Baselines3's; `agents.load_policy("bundled")` loads the package's own
policy, checked against the package's perception weights; `agents.save_policy(model, folder, metadata)`
writes one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_policy", "save_policy"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the policy files pull in torch and Stable-Baselines3.
    if name in __all__:
        from . import policy_files

        return getattr(policy_files, name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
