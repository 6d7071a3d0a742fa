"""SAC settings for `CarlaPerception-v0` in RL Baselines3 Zoo's form, with a replay buffer that fits in memory.

    python -m rl_zoo3.train --algo sac --env CarlaPerception-v0 --gym-packages carla_gym --conf-file agents.hyperparams.sac

One observation of the default 40x80 size takes about 22 KB, and SB3's replay buffer for dict
observations stores it twice per transition (observation and next observation), so the buffer holds
`BUFFER_SIZE` transitions in about `buffer_bytes()` (~1.4 GB), allocated when training starts. The
other values follow the Zoo's gSDE settings for continuous control (lr 7.3e-4, tau 0.02, 8 gradient
steps every 8 env steps, automatic entropy), with gamma 0.99 as for PPO and the same
`PerceptionExtractor`; the actor and the critics each have their own extractor (SAC's default).
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np

from agents.features import PerceptionExtractor

BUFFER_SIZE = 30_000

SAC_DEFAULTS: dict[str, Any] = dict(
    learning_rate=7.3e-4,
    buffer_size=BUFFER_SIZE,
    batch_size=256,
    learning_starts=1000,
    gamma=0.99,
    tau=0.02,
    train_freq=8,
    gradient_steps=8,
    ent_coef="auto",
    use_sde=True,
)


def policy_kwargs() -> dict[str, Any]:
    """`PerceptionExtractor` features, 256x256 actor and critic heads, gSDE starting with small noise (a new dict each call)."""
    return dict(features_extractor_class=PerceptionExtractor, log_std_init=-3.0, net_arch=[256, 256])


def buffer_bytes(obs_size: tuple[int, int] = (40, 80), buffer_size: int = BUFFER_SIZE) -> int:
    """Bytes the replay buffer allocates for `buffer_size` transitions of `obs_size` observations (obs + next obs)."""
    from carla_gym.env import observation_space

    space = observation_space(obs_size)
    per_obs = sum(
        int(np.prod(cast(gym.spaces.Box, sub).shape)) * np.dtype(sub.dtype).itemsize for sub in space.spaces.values()
    )
    return 2 * per_obs * buffer_size


def zoo_hyperparams() -> dict[str, dict[str, Any]]:
    """The Zoo's per-env settings (SAC needs continuous actions: no entry for the discrete env)."""
    return {
        "CarlaPerception-v0": dict(
            policy="MultiInputPolicy", n_envs=1, n_timesteps=200_000, **SAC_DEFAULTS, policy_kwargs=policy_kwargs()
        )
    }


def __getattr__(name: str) -> Any:
    # A fresh dict per read: the Zoo edits the one it gets (see agents.hyperparams.ppo).
    if name == "hyperparams":
        return zoo_hyperparams()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
