"""Env steps per second, timed block by block: one env or `carla_gym.make_vec`, driven by the worlds' autopilots.

Shared by `env_speed.py` and `gpu_suite.py`; not a script of its own.
"""

from __future__ import annotations

import time

import gymnasium as gym

import carla_gym
from agents.cloning import current_infos, expert_actions
from carla_gym.env.contracts import controls_to_actions

BLOCK = 25


class SingleEnv:
    """One `CarlaPerception-v0` env driven by its autopilot, timed block by block."""

    def __init__(self, perception: str, engine: str, weights: str) -> None:
        self.env = gym.make(
            "CarlaPerception-v0", perception=perception, weights=weights, engine=engine, camera_size=(128, 256)
        )
        self.env.reset(seed=0)
        self.sim = self.env.unwrapped.sim

    def block(self) -> float:
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            _, _, terminated, truncated, _ = self.env.step(controls_to_actions([self.sim.autopilot_control()])[0])
            if terminated or truncated:
                self.env.reset()
        return BLOCK / (time.perf_counter() - t0)

    def close(self) -> None:
        self.env.close()


class VecEnv:
    """`carla_gym.make_vec(n)` driven by the worlds' autopilots, timed block by block (env steps/s).

    The autopilots' actions come with each step's infos (`expert_action=True`), as DAgger reads its labels;
    `ask=True` asks every world for them instead, one more round trip per step."""

    def __init__(self, n: int, perception: str, engine: str, weights: str | None, ask: bool = False) -> None:
        self.n, self.ask = n, ask
        self.vec = carla_gym.make_vec(
            n, perception=perception, weights=weights, engine=engine, camera_size=(128, 256), expert_action=not ask
        )
        self.vec.seed(0)
        self.vec.reset()
        self.infos = list(self.vec.reset_infos)

    def block(self) -> float:
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            if self.ask:
                self.vec.step(controls_to_actions(self.vec.env_method("autopilot_control")))
                continue
            _, _, dones, infos = self.vec.step(expert_actions(self.vec, self.infos))
            self.infos = current_infos(self.vec, infos, dones)
        return self.n * BLOCK / (time.perf_counter() - t0)

    def close(self) -> None:
        self.vec.close()
