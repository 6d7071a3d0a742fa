"""`CarlaPerception-v0`: drive a simulator while seeing it through learned temporal perception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..sim import Control, backend_class, make_backend
from .dashboard import dashboard
from .observation import observation_space
from .perception_source import make_perception
from .reward import RewardConfig, target_speed
from .task import DISCRETE_ACTIONS, DrivingTask, check_action


def resolve_town(backend: str, split: str | None, town_index: int, backend_options: dict[str, Any]) -> dict[str, Any]:
    """Backend options with the town picked from `split` (round-robin by `town_index`) unless one is given."""
    if split is None:
        return backend_options
    towns = backend_class(backend).towns(split)
    return {"town": towns[town_index % len(towns)], **backend_options}


class CarlaPerceptionEnv(gym.Env):
    """Gymnasium env: a simulator backend, a perception source, and a driving task along a route.

    Args:
        backend: "embedded" (default, no server) or "carla".
        perception: "model" (the temporal perception network) or "ground_truth" (the simulator's
            own labels, depth and poses: a privileged upper bound with identical spaces).
        weights: weights folder for the model; default the bundled `lite` weights.
        device: "auto", "cpu" or "cuda" for the model.
        camera_size: (H, W) of the camera.
        obs_size: (h, w) of the image observations.
        route_length: metres of random route per episode (the autopilot drives 200 m in well under
            the default 1000-step time limit, red lights included).
        split: pick the town from this split of the backend's catalogue ("train", "val", "test");
            `town_index` chooses which (vector envs spread over the split).
        reward: RewardConfig (or a dict of its fields).
        discrete: use the 15-action discrete variant (`CarlaPerceptionDiscrete-v0`).
        blocked_seconds: end the episode after standing still this long with nothing to wait for.
        max_route_offset: end the episode when farther than this (m) from the route.
        terminate_off_road: end the episode when the ego leaves the road (it is penalised either way).
        render_mode: None or "rgb_array".
        **backend_options: passed to `make_backend` (town, host, port, vehicles, ...).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        backend: str = "embedded",
        perception: str = "model",
        weights: str | Path | None = None,
        device: str = "auto",
        camera_size: tuple[int, int] = (128, 256),
        obs_size: tuple[int, int] = (40, 80),
        route_length: float = 200.0,
        split: str | None = None,
        town_index: int = 0,
        reward: RewardConfig | dict[str, float] | None = None,
        discrete: bool = False,
        blocked_seconds: float = 10.0,
        max_route_offset: float = 6.0,
        terminate_off_road: bool = True,
        render_mode: str | None = None,
        **backend_options: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.perception_mode = perception
        self.discrete = discrete
        self.observation_space = observation_space(tuple(obs_size))
        self.action_space = gym.spaces.Discrete(len(DISCRETE_ACTIONS)) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        # Perception first: a missing weights folder fails before a simulator is started.
        self.perception = make_perception(perception, 1, obs_size, weights, device)
        reward_config = RewardConfig.from_any(reward)
        sim = make_backend(backend, size=tuple(camera_size), route_length=route_length,
                           **resolve_town(backend, split, town_index, backend_options))
        self.task = DrivingTask(sim, reward_config, blocked_seconds, max_route_offset, terminate_off_road=terminate_off_road)
        self._last_perception: dict[str, np.ndarray] = {}

    @property
    def sim(self):
        """The simulator backend (e.g. for its `autopilot_control()`)."""
        return self.task.sim

    def autopilot_control(self) -> Control:
        """The simulator's autopilot control for the current state (privileged: an expert for imitation)."""
        if not hasattr(self.sim, "autopilot_control"):
            raise NotImplementedError(f"the {self.sim.name} backend has no autopilot_control()")
        return self.sim.autopilot_control()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # The episode seed comes from the env's generator, so reset() after reset(seed=s) is reproducible too.
        frame, info = self.task.reset(int(self.np_random.integers(2**31 - 1)), options)
        self.perception.reset(0)
        return self._observe(frame), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """One tick. `info["termination"]` names why an episode ended; the time limit is Gymnasium's
        TimeLimit wrapper (`max_episode_steps`, default 1000), and a simulator fault truncates with
        `info["truncation"] = "simulator_fault"` and the error in `info["error"]`."""
        result = self.task.step(check_action(action, self.discrete))
        if result.info.get("truncation") == "simulator_fault":
            return {k: v.copy() for k, v in self._last_obs.items()}, 0.0, False, True, result.info
        return self._observe(result.frame), result.reward, result.terminated, result.truncated, result.info

    def render(self) -> np.ndarray | None:
        frame = self.task.frame
        if self.render_mode != "rgb_array" or frame is None:
            return None
        p = self._last_perception
        lines = [
            f"speed {frame.speed * 3.6:5.1f} km/h   target {target_speed(frame.hazards, self.task.reward_config) * 3.6:5.1f}",
            f"route {frame.route.completion * 100:5.1f}%   {frame.route.distance_left:6.0f} m left",
            f"return {self.task.episode_return:7.2f}   step {self.task.steps}",
            f"perception: {self.perception_mode}",
            "events: " + (", ".join(map(str, frame.events)) or "none"),
        ]
        return dashboard(frame, p.get("labels", frame.semantic), p.get("depth_m", frame.depth), self.task.trail, lines)

    def close(self) -> None:
        if getattr(self, "task", None) is not None:
            self.task.close()
            self.task = None

    def _observe(self, frame) -> dict[str, np.ndarray]:
        p = self.perception.step([frame])
        self._last_perception = {k: p[k][0] for k in ("labels", "depth_m") if k in p}
        self._last_obs = {
            "semantic": p["semantic"][0],
            "depth": p["depth"][0],
            "ego_motion": p["ego_motion"][0].astype(np.float32),
            **self.task.vector_observation(frame),
        }
        return self._last_obs
