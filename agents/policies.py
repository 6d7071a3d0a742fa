"""Policies that `agents.evaluate` can score: a trained PPO checkpoint, the world's autopilot, random actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

Policy = Callable[[dict[str, np.ndarray], gym.Env], Any]


def control_to_action(control: Any) -> np.ndarray:
    """A simulator Control as the env's (steer, acceleration) action: throttle minus brake."""
    return np.array([control.steer, control.throttle - control.brake], dtype=np.float32)


def autopilot_policy(obs: dict[str, np.ndarray], env: gym.Env) -> np.ndarray:
    """The simulator's route-following autopilot (privileged: it sees the world, not the camera)."""
    return control_to_action(env.unwrapped.autopilot_control())


def random_policy(obs: dict[str, np.ndarray], env: gym.Env) -> Any:
    """Uniformly random actions from the env's action space (seeded by `env.action_space.seed`)."""
    return env.action_space.sample()


def load_policy(name: str, device: str = "auto") -> Policy:
    """"autopilot", "random", or the path of a Stable-Baselines3 PPO checkpoint (.zip)."""
    if name == "autopilot":
        return autopilot_policy
    if name == "random":
        return random_policy
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PPO checkpoint (POLICY is a .zip path, 'autopilot' or 'random')")
    from stable_baselines3 import PPO

    model = PPO.load(path, device=device)

    def ppo_policy(obs: dict[str, np.ndarray], env: gym.Env) -> Any:
        action, _ = model.predict(obs, deterministic=True)
        return action

    return ppo_policy
