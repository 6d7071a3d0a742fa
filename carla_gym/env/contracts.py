"""What the env promises its users: how episodes end, which infractions it counts, how actions map to controls.

Agents import these instead of retyping the strings. The enum members are `str`s equal to their
values, and `str()` and f-strings give the value, so `info` dicts, JSON files and log tags read the
same plain strings as the members: `info["termination"] == Termination.COLLISION` holds.
"""

from __future__ import annotations

import enum

import numpy as np

from ..sim import Control, Event, EventKind


class _StrEnum(str, enum.Enum):
    """A `str` enum whose `str()` and format are its value (`enum.StrEnum` from Python 3.11 on)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Termination(_StrEnum):
    """Why an episode terminated (`info["termination"]`; None while it runs)."""

    ROUTE_COMPLETED = "route_completed"
    COLLISION = "collision"
    OFF_ROAD = "off_road"
    OFF_ROUTE = "off_route"
    BLOCKED = "blocked"
    RED_LIGHT = "red_light"  # only with EnvConfig.terminate_red_light


class Truncation(_StrEnum):
    """Why an episode was cut short without terminating (`info["truncation"]`)."""

    TIME_LIMIT = "time_limit"
    SIMULATOR_FAULT = "simulator_fault"


# Every way an episode can end, terminated or truncated.
ENDINGS: tuple[Termination | Truncation, ...] = (*Termination, *Truncation)


class Infraction(_StrEnum):
    """What the env counts in `info["infractions"]`: collisions by the leaderboard's category, then other events."""

    COLLISION_PEDESTRIAN = "collision_pedestrian"
    COLLISION_VEHICLE = "collision_vehicle"
    COLLISION_STATIC = "collision_static"
    RED_LIGHT = "red_light"
    LANE_INVASION = "lane_invasion"
    OFF_ROAD = "off_road"

    @property
    def is_collision(self) -> bool:
        return self.value.startswith("collision_")

    @classmethod
    def of(cls, event: Event) -> Infraction:
        """The infraction a simulator event counts as (a collision by its category: pedestrian, vehicle, static)."""
        if event.kind is EventKind.COLLISION:
            return cls(f"collision_{event.category}")
        return cls(event.kind.value)


# (steer, acceleration) of each action of the discrete variant
DISCRETE_ACTIONS = np.array([(s, a) for a in (0.6, 0.0, -1.0) for s in (-0.5, -0.15, 0.0, 0.15, 0.5)], dtype=np.float32)


def action_to_control(action: np.ndarray) -> Control:
    """(steer, acceleration) in [-1, 1] to a Control: positive acceleration is throttle, negative is brake."""
    steer, accel = float(action[0]), float(action[1])
    return Control(steer=steer, throttle=max(accel, 0.0), brake=max(-accel, 0.0))


def control_to_action(control: Control) -> np.ndarray:
    """The inverse of `action_to_control`: (steer, throttle minus brake), e.g. to replay the autopilot."""
    return np.array([control.steer, control.throttle - control.brake], dtype=np.float32)


def controls_to_actions(controls: list[Control]) -> np.ndarray:
    """(n, 2) actions of n controls, e.g. the autopilot's controls of every world of a vector env."""
    return np.array([control_to_action(c) for c in controls], dtype=np.float32).reshape(len(controls), 2)
