"""`CarlaPerception-v0`: drive a simulator while seeing it through learned temporal perception."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from ..sim import Control, make_backend
from .config import EnvConfig, resolve_town
from .contracts import Truncation
from .emergency_brake import mark_braked, with_brake
from .observation import assemble_observation, observation_space
from .perception_source import perception_input, what_perception_saw
from .task import DISCRETE_ACTIONS, DrivingTask, check_action
from .threads import cap_threads_in_worker

__all__ = ["CarlaPerceptionEnv", "resolve_town"]


class CarlaPerceptionEnv(gym.Env):
    """Gymnasium env: a simulator backend, a perception source, and a driving task along a route.

    Args:
        config: the env's options as an `EnvConfig`; keyword options override its fields.
        render_mode: None or "rgb_array".
        **options: the fields of `EnvConfig` (backend, perception, weights, device, engine,
            camera_size, obs_size, route_length, split, town_index, reward, discrete,
            blocked_seconds, max_route_offset, terminate_off_road, terminate_red_light, expert_action,
            pedestrian_crossings, crossing_distance_m, road_user_gaps, emergency_brake); any other keyword is a
            backend option passed to `make_backend` (town, host, port, vehicles, ...).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: EnvConfig | None = None, *, render_mode: str | None = None, **options: Any) -> None:
        cap_threads_in_worker()  # n worker processes each with a full torch thread pool oversubscribe the cores
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = cfg = EnvConfig.from_kwargs(config, **options)
        self.render_mode = render_mode
        self.perception_mode = cfg.perception
        self.discrete = cfg.discrete
        self.observation_space = observation_space(cfg.obs_size, cfg.road_user_gaps)
        self.action_space = action_space(cfg.discrete)
        # Perception first: a missing weights folder fails before a simulator is started.
        self.perception = cfg.make_perception(1)
        self.task = DrivingTask(make_backend(cfg.backend, **cfg.world_options(0)), **cfg.task_kwargs())
        self._seen: Callable[[], dict[str, np.ndarray]] = dict  # what perception saw last, made when rendered
        self._brake = False  # whether the emergency brake acts on the next step (`EnvConfig.emergency_brake`)
        self._braked = False  # whether it acted on the last one

    @property
    def sim(self):
        """The simulator backend (e.g. for its `autopilot_control()`)."""
        self._check_open()
        return self.task.sim

    def autopilot_control(self) -> Control:
        """The simulator's autopilot control for the current state (privileged: an expert for imitation)."""
        if not hasattr(self.sim, "autopilot_control"):
            raise NotImplementedError(f"the {self.sim.name} backend has no autopilot_control()")
        return self.sim.autopilot_control()

    def _check_open(self) -> None:
        if getattr(self, "task", None) is None:
            raise RuntimeError("this CarlaPerception-v0 env is closed; make a new one with gym.make")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_open()
        super().reset(seed=seed)
        # The episode seed comes from the env's generator, so reset() after reset(seed=s) is reproducible too.
        frame, info = self.task.reset(int(self.np_random.integers(2**31 - 1)), options)
        self.perception.reset(0)
        self._braked = False
        return self._observe(frame), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """One tick. `info["termination"]` names why an episode ended; the time limit is Gymnasium's
        TimeLimit wrapper (`max_episode_steps`, default 1000), and a simulator fault truncates with
        `info["truncation"] = "simulator_fault"` and the error in `info["error"]`. With the `emergency_brake`
        option, `info["emergency_brake"]` says whether it braked in place of the action's acceleration."""
        self._check_open()
        applied = check_action(action, self.discrete)
        self._braked = self._brake
        if self._braked:
            applied = with_brake(applied)
        result = self.task.step(applied)
        if self.config.emergency_brake is not None:
            result.info["emergency_brake"] = self._braked
        if result.info.get("truncation") == Truncation.SIMULATOR_FAULT:
            return {k: v.copy() for k, v in self._last_obs.items()}, 0.0, False, True, result.info
        return self._observe(result.frame), result.reward, result.terminated, result.truncated, result.info

    def render(self) -> np.ndarray | None:
        self._check_open()
        if self.render_mode != "rgb_array":
            return None
        seen = self._seen()
        picture = self.task.dashboard(seen.get("labels"), seen.get("depth_m"), self.perception_mode)
        return mark_braked(picture) if self._braked and picture is not None else picture

    def close(self) -> None:
        if getattr(self, "task", None) is not None:
            self.task.close()
            self.task = None  # type: ignore[assignment]  # a closed env holds no task

    def _observe(self, frame) -> dict[str, np.ndarray]:
        p = self.perception.step([perception_input(frame, self.perception_mode)])
        self._seen = partial(what_perception_saw, p, 0)
        self._last_obs = self.config.observe(assemble_observation(p, 0, self.task.vector_observation(frame)))
        self._brake = self.config.brakes(self._last_obs)
        return self._last_obs


def action_space(discrete: bool) -> gym.spaces.Space:
    """The action space: 15 discrete actions, or (steer, acceleration) in [-1, 1]."""
    return gym.spaces.Discrete(len(DISCRETE_ACTIONS)) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
