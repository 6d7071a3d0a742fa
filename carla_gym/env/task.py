"""The driving task around a simulator: actions, reward, termination and episode bookkeeping.

It is everything of `CarlaPerception-v0` except perception, so that vector envs can run tasks in
worker processes and perception for all of them in one batch in the main process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..sim import EventKind, Frame, Hazards, SimulatorBackend, SimulatorError
from ..sim.contract import CROSSING_M
from .contracts import (
    DISCRETE_ACTIONS,
    Infraction,
    Termination,
    Truncation,
    action_to_control,
    control_to_action,
)
from .dashboard import dashboard
from .observation import route_geometry, route_waypoints, vehicle_state
from .reward import RewardConfig, reward_terms, target_speed, termination_terms, waiting

CROSSING_STREAM = 1  # the episode seed's random stream that draws its crossing, apart from the world's

# Re-exported: the action mapping lives in `contracts`, shared with agents.
__all__ = ["DISCRETE_ACTIONS", "DrivingTask", "StepResult", "action_to_control", "check_action", "control_to_action"]


def check_action(action: Any, discrete: bool) -> np.ndarray:
    """Validate an action and return it as (steer, acceleration): NaN or inf is an error, the rest is clipped."""
    if discrete:
        if np.ndim(action) != 0 or not float(action).is_integer() or not 0 <= int(action) < len(DISCRETE_ACTIONS):
            raise ValueError(f"discrete action must be an integer in [0, {len(DISCRETE_ACTIONS)}), got {action!r}")
        return DISCRETE_ACTIONS[int(action)]
    try:
        a = np.asarray(action, dtype=np.float64)  # float64 first: a finite value beyond float32 is clipped, not inf
    except (TypeError, ValueError):
        raise ValueError(f"action must be (steer, acceleration) numbers, got {action!r}") from None
    if a.shape != (2,):
        raise ValueError(f"action must be (steer, acceleration) of shape (2,), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"action must be finite, got {a.tolist()}")
    return np.clip(a, -1.0, 1.0).astype(np.float32)


@dataclass
class StepResult:
    """What one task step produced, before perception."""

    frame: Frame
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)


class DrivingTask:
    """Drive a route: turns actions into controls and frames into reward, flags and the vector observations.

    `max_episode_steps` (None: no limit) truncates episodes here; the Gymnasium env leaves it to
    Gymnasium's TimeLimit wrapper instead.
    """

    def __init__(
        self,
        sim: SimulatorBackend,
        reward: RewardConfig,
        blocked_seconds: float = 10.0,
        max_route_offset: float = 6.0,
        max_episode_steps: int | None = None,
        terminate_off_road: bool = True,
        terminate_red_light: bool = False,
        expert_action: bool = False,
        pedestrian_crossings: float = 0.0,
        crossing_distance_m: tuple[float, float] = CROSSING_M,
    ) -> None:
        self.sim = sim
        self.pedestrian_crossings = pedestrian_crossings
        self.crossing_distance_m = crossing_distance_m
        self.expert_action = expert_action
        self.reward_config = reward
        self.blocked_seconds = blocked_seconds
        self.max_route_offset = max_route_offset
        self.max_episode_steps = max_episode_steps
        self.terminate_off_road = terminate_off_road
        self.terminate_red_light = terminate_red_light
        self.frame: Frame | None = None

    def reset(self, seed: int, options: dict[str, Any] | None = None) -> tuple[Frame, dict[str, Any]]:
        scenario = self.scenario(seed, options)
        frame = self.sim.reset(seed=seed, options=scenario)
        self.frame = frame
        self.last_action = np.zeros(2, dtype=np.float32)
        self.steps = 0
        self.still_steps = 0
        self.distance = 0.0
        self.infractions: Counter[Infraction] = Counter({k: 0 for k in Infraction})
        self.trail = [frame.transform[:3, 3].copy()]
        self.episode_return = 0.0
        return frame, self._with_expert({**self.info(frame), "scenario": dict(scenario or {})})

    def scenario(self, seed: int, options: dict[str, Any] | None) -> dict[str, Any] | None:
        """The reset options of episode `seed`: `options`, plus (in a `pedestrian_crossings` share of episodes,
        drawn from the seed alone, unless `options` sets one) a `crossing_m` drawn from `crossing_distance_m`."""
        if self.pedestrian_crossings <= 0.0 or (options and "crossing_m" in options):
            return options
        rng = np.random.default_rng([seed, CROSSING_STREAM])
        if rng.random() >= self.pedestrian_crossings:
            return options
        return {**(options or {}), "crossing_m": float(rng.uniform(*self.crossing_distance_m))}

    def step(self, action: np.ndarray) -> StepResult:
        """Advance one tick with a checked (steer, acceleration) action."""
        if self.frame is None:
            raise RuntimeError("call reset() before step()")
        prev = self.frame
        try:
            frame = self.sim.step(action_to_control(action))
        except SimulatorError as err:  # a lost server or a timeout ends the episode, not the program
            self.frame = None
            return StepResult(
                prev,
                0.0,
                False,
                True,
                {**self.info(prev), "truncation": Truncation.SIMULATOR_FAULT.value, "error": str(err)},
            )
        self.frame = frame
        self.last_action = action
        self.steps += 1
        self.distance += frame.speed * self.sim.fixed_delta_seconds
        self.trail.append(frame.transform[:3, 3].copy())
        for event in frame.events:
            self.infractions[Infraction.of(event)] += 1

        offset, heading = route_geometry(frame)
        blocked = frame.speed < 0.1 and not waiting(frame.hazards, self.reward_config)
        self.still_steps = self.still_steps + 1 if blocked else 0
        termination = self._termination(frame, offset)
        ending = termination.value if termination else None

        terms = reward_terms(
            frame, prev.route.distance_left - frame.route.distance_left, offset, heading, self.reward_config
        )
        terms.update(termination_terms(ending, self.reward_config))
        reward = float(sum(terms.values()))
        self.episode_return += reward
        info = {**self.info(frame), "reward_terms": terms, "termination": ending}
        truncated = termination is None and self.max_episode_steps is not None and self.steps >= self.max_episode_steps
        if truncated:
            info["truncation"] = Truncation.TIME_LIMIT.value
        return StepResult(frame, reward, termination is not None, truncated, self._with_expert(info))

    def _with_expert(self, info: dict[str, Any]) -> dict[str, Any]:
        """`info` with the autopilot's action in the current state under "expert_action", when asked for."""
        if self.expert_action:
            info["expert_action"] = control_to_action(self.sim.autopilot_control())  # type: ignore[attr-defined]
        return info

    def vector_observation(self, frame: Frame) -> dict[str, np.ndarray]:
        """The observation keys that do not come from perception: `state` and `route`."""
        return {
            "state": vehicle_state(frame, self.last_action, self.signal_speed(frame)),
            "route": route_waypoints(frame),
        }

    def signal_speed(self, frame: Frame) -> float:
        """The speed target from the route's signals alone (cruise speed, slowing for a red light).

        Unlike the reward's target it ignores lead vehicles and pedestrians: the agent must see
        those through perception rather than read their distance from the simulator.
        """
        return target_speed(Hazards(red_light=frame.hazards.red_light), self.reward_config)

    def info(self, frame: Frame) -> dict[str, Any]:
        """The step's `info`: scoring figures, events, speed, and the simulator's hazards ahead (privileged:
        for scoring, experts and diagnosis; the observation never holds them)."""
        return {
            "route_completion": frame.route.completion,
            "distance": self.distance,
            "infractions": {k.value: n for k, n in self.infractions.items()},
            "events": [str(e) for e in frame.events],
            "speed": frame.speed,
            "hazards": {"lead": frame.hazards.lead, "red_light": frame.hazards.red_light},
        }

    def _termination(self, frame: Frame, offset: float) -> Termination | None:
        if frame.has(EventKind.COLLISION):
            return Termination.COLLISION
        if self.terminate_off_road and frame.has(EventKind.OFF_ROAD):
            return Termination.OFF_ROAD
        if self.terminate_red_light and frame.has(EventKind.RED_LIGHT):
            return Termination.RED_LIGHT
        if abs(offset) > self.max_route_offset:
            return Termination.OFF_ROUTE
        if self.still_steps * self.sim.fixed_delta_seconds >= self.blocked_seconds:
            return Termination.BLOCKED
        if frame.route.distance_left <= 2.0:
            return Termination.ROUTE_COMPLETED
        return None

    def dashboard(
        self, labels: np.ndarray | None, depth_m: np.ndarray | None, perception_mode: str
    ) -> np.ndarray | None:
        """The `render_mode="rgb_array"` picture of the current frame (None before the first reset).

        `labels` and `depth_m` are what perception saw (None: the simulator's own labels and depth).
        """
        frame = self.frame
        if frame is None:
            return None
        lines = [
            f"speed {frame.speed * 3.6:5.1f} km/h   target {target_speed(frame.hazards, self.reward_config) * 3.6:5.1f}",
            f"route {frame.route.completion * 100:5.1f}%   {frame.route.distance_left:6.0f} m left",
            f"return {self.episode_return:7.2f}   step {self.steps}",
            f"perception: {perception_mode}",
            "events: " + (", ".join(map(str, frame.events)) or "none"),
        ]
        return dashboard(
            frame,
            frame.semantic if labels is None else labels,
            frame.depth if depth_m is None else depth_m,
            self.trail,
            lines,
        )

    def close(self) -> None:
        self.sim.close()
