"""The driving task around a simulator: actions, reward, termination and episode bookkeeping.

It is everything of `CarlaPerception-v0` except perception, so that vector envs can run tasks in
worker processes and perception for all of them in one batch in the main process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..sim import Control, EventKind, Frame, Hazards, SimulatorBackend, SimulatorError
from .dashboard import dashboard
from .observation import route_geometry, route_waypoints, vehicle_state
from .reward import RewardConfig, reward_terms, target_speed

# (steer, acceleration) of each action of the discrete variant
DISCRETE_ACTIONS = np.array([(s, a) for a in (0.6, 0.0, -1.0) for s in (-0.5, -0.15, 0.0, 0.15, 0.5)], dtype=np.float32)
INFRACTIONS = (
    "collision_pedestrian",
    "collision_vehicle",
    "collision_static",
    "red_light",
    "lane_invasion",
    "off_road",
)


def action_to_control(action: np.ndarray) -> Control:
    """(steer, acceleration) in [-1, 1] to a Control: positive acceleration is throttle, negative is brake."""
    steer, accel = float(action[0]), float(action[1])
    return Control(steer=steer, throttle=max(accel, 0.0), brake=max(-accel, 0.0))


def control_to_action(control: Control) -> np.ndarray:
    """The inverse of `action_to_control`: (steer, throttle minus brake), e.g. to replay the autopilot."""
    return np.array([control.steer, control.throttle - control.brake], dtype=np.float32)


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
    ) -> None:
        self.sim = sim
        self.reward_config = reward
        self.blocked_seconds = blocked_seconds
        self.max_route_offset = max_route_offset
        self.max_episode_steps = max_episode_steps
        self.terminate_off_road = terminate_off_road
        self.frame: Frame | None = None

    def reset(self, seed: int, options: dict[str, Any] | None = None) -> tuple[Frame, dict[str, Any]]:
        frame = self.sim.reset(seed=seed, options=options)
        self.frame = frame
        self.last_action = np.zeros(2, dtype=np.float32)
        self.steps = 0
        self.still_steps = 0
        self.distance = 0.0
        self.infractions = Counter({k: 0 for k in INFRACTIONS})
        self.trail = [frame.transform[:3, 3].copy()]
        self.episode_return = 0.0
        return frame, self.info(frame)

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
                prev, 0.0, False, True, {**self.info(prev), "truncation": "simulator_fault", "error": str(err)}
            )
        self.frame = frame
        self.last_action = action
        self.steps += 1
        self.distance += frame.speed * self.sim.fixed_delta_seconds
        self.trail.append(frame.transform[:3, 3].copy())
        for event in frame.events:
            self.infractions[
                f"collision_{event.category}" if event.kind is EventKind.COLLISION else event.kind.value
            ] += 1

        offset, heading = route_geometry(frame)
        terms = reward_terms(
            frame, prev.route.distance_left - frame.route.distance_left, offset, heading, self.reward_config
        )
        reward = float(sum(terms.values()))
        self.episode_return += reward
        waiting = target_speed(frame.hazards, self.reward_config) < 0.5
        self.still_steps = self.still_steps + 1 if frame.speed < 0.1 and not waiting else 0

        termination = self._termination(frame, offset)
        info = {**self.info(frame), "reward_terms": terms, "termination": termination}
        truncated = termination is None and self.max_episode_steps is not None and self.steps >= self.max_episode_steps
        if truncated:
            info["truncation"] = "time_limit"
        return StepResult(frame, reward, termination is not None, truncated, info)

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
        return {
            "route_completion": frame.route.completion,
            "distance": self.distance,
            "infractions": dict(self.infractions),
            "events": [str(e) for e in frame.events],
            "speed": frame.speed,
        }

    def _termination(self, frame: Frame, offset: float) -> str | None:
        if frame.has(EventKind.COLLISION):
            return "collision"
        if self.terminate_off_road and frame.has(EventKind.OFF_ROAD):
            return "off_road"
        if abs(offset) > self.max_route_offset:
            return "off_route"
        if self.still_steps * self.sim.fixed_delta_seconds >= self.blocked_seconds:
            return "blocked"
        if frame.route.distance_left <= 2.0:
            return "route_completed"
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
