"""PPO settings for `CarlaPerception-v0`: shared by `agents.train_ppo` and RL Baselines3 Zoo.

    python -m rl_zoo3.train --algo ppo --env CarlaPerception-v0 --gym-packages carla_gym --conf-file agents.hyperparams.ppo

The values follow rl-baselines3-zoo's tuned CarRacing-v2 settings (a continuous-control driving task
from pixels: gSDE exploration, 4 rollouts of 512 steps, gamma 0.99, GAE 0.95, clip 0.2) with Roach's
(Zhang et al., ICCV 2021) entropy bonus of 0.01 for driving; rollouts are shorter than Roach's because
episodes here are 1000 steps long. Two changes for CPU machines: 5 epochs per update instead of the
Zoo's 10, and 4 worlds. `learning_rate` is written as the Zoo writes it: a number is a constant rate
(the default, 3e-4), `"lin_<start>"` a rate falling linearly to 0 over the run (the Zoo's CarRacing
uses `lin_1e-4`); `learning_rate_schedule` reads both.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.utils import LinearSchedule

from agents.features import PerceptionExtractor

PPO_DEFAULTS: dict[str, Any] = dict(
    learning_rate=3e-4,
    n_steps=512,
    batch_size=128,
    n_epochs=5,
    gamma=0.99,
    gae_lambda=0.95,
    clip_range=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    use_sde=True,
    sde_sample_freq=4,
)

# gSDE's initial log std. The action noise is |policy latent| x exp(log_std), so the same value gives
# more noise once the latent has grown (an imitation-trained policy: ~0.7 at -2.0).
LOG_STD_INIT = -2.0

N_ENVS = 4
N_TIMESTEPS = 200_000


def learning_rate_schedule(value: float | str) -> float | LinearSchedule:
    """SB3's `learning_rate` for a Zoo-style value: a number as it is, `"lin_3e-4"` as a rate falling
    linearly from 3e-4 at the start of the run to 0 at its end. Raises ValueError naming a bad value."""
    text = str(value)
    try:
        rate = float(text.removeprefix("lin_"))
    except ValueError:
        rate = float("nan")
    if not rate >= 0:
        raise ValueError(f"learning rate {text!r}: expected a number >= 0 (constant) or lin_<number> (linear to 0)")
    return LinearSchedule(rate, 0.0, 1.0) if text.startswith("lin_") else rate


def policy_kwargs(log_std_init: float = LOG_STD_INIT, last_action: bool = True) -> dict[str, Any]:
    """The policy network: `PerceptionExtractor`, then separate 256x256 actor and critic heads (a new dict each call).

    `last_action=False`: the extractor hides the last action in the observation from the policy."""
    return dict(
        features_extractor_class=PerceptionExtractor,
        features_extractor_kwargs={} if last_action else {"last_action": False},
        log_std_init=log_std_init,
        net_arch=dict(pi=[256, 256], vf=[256, 256]),
    )


def zoo_hyperparams() -> dict[str, dict[str, Any]]:
    """The Zoo's per-env settings; the discrete-action env drops gSDE, which needs continuous actions."""
    continuous = dict(
        policy="MultiInputPolicy", n_envs=N_ENVS, n_timesteps=N_TIMESTEPS, **PPO_DEFAULTS, policy_kwargs=policy_kwargs()
    )
    discrete = {k: v for k, v in continuous.items() if k not in ("use_sde", "sde_sample_freq")}
    discrete["policy_kwargs"] = {k: v for k, v in policy_kwargs().items() if k != "log_std_init"}
    return {"CarlaPerception-v0": continuous, "CarlaPerceptionDiscrete-v0": discrete}


def __getattr__(name: str) -> Any:
    # The Zoo reads `hyperparams` from this module and edits the dict it gets (overrides, deletions);
    # a fresh one per read keeps a second run in the same process from seeing the first one's edits.
    if name == "hyperparams":
        return zoo_hyperparams()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
