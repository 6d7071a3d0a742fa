"""An emergency brake on learned perception: the env option `emergency_brake`, which brakes fully when perception
sees a road user in the ego's path closer than the car can stop.

A policy fitted to an expert's labels learns the common states well and the rare hard stops poorly: a
pedestrian who steps out a few metres ahead while the car gathers speed is among the rarest states in its
data. Road vehicles meet this with an automatic emergency brake (AEB), a simple rule under the driving
policy. `EmergencyBrakeConfig` is that rule for `CarlaPerception-v0`: after each observation the env reads the
nearest road user's gap along the route off the observation's own semantic and depth maps
(`carla_gym.env.road_user_gaps`: what perception saw, never the simulator's state) and, while that gap is
under the stopping distance at the current speed plus a margin, replaces the policy's acceleration on the next
step with a full brake (its steering is kept). The observation's `state` reports the action applied, as it
always does. It is an env option rather than a wrapper so that one flag puts it under every world of a vector
env (`gym.make_vec`, `carla_gym.make_vec`, RLlib) as well as under one env.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from .observation import STATE_SPEED_SCALE
from .road_user_gaps import ROAD_USER_GROUPS, RoadUserGapConfig, road_user_gaps

BRAKE_COLOUR = (220, 30, 30)  # RGB of the frame `mark_braked` draws


@dataclass(frozen=True)
class EmergencyBrakeConfig:
    """When the brake acts.

    It brakes while a road user of `groups` is nearer the front bumper than
    `speed * reaction_s + speed**2 / (2 * deceleration)` plus `margin_m`: the distance the car needs to
    stop braking at `deceleration` m/s^2 after `reaction_s` seconds (the ego brakes at up to 8 m/s^2), with
    `margin_m` to spare, and only while the car moves faster than `min_speed` m/s: starting from a standstill
    is left to the policy (a road user that perception sees where there is none would otherwise hold the car
    for good), and the brake stops the car again if it gathers speed toward one. `groups` is the road users it
    brakes for ("vehicle", "pedestrian"); `gaps` is how road users in the path are found.
    """

    margin_m: float = 2.5
    reaction_s: float = 0.1
    deceleration: float = 6.0
    min_speed: float = 1.0
    groups: tuple[str, ...] = ROAD_USER_GROUPS
    gaps: RoadUserGapConfig = RoadUserGapConfig(half_width_m=1.2, min_cells=2)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.groups) - set(ROAD_USER_GROUPS))
        if unknown or not self.groups:
            raise ValueError(f"groups must be a non-empty subset of {ROAD_USER_GROUPS}, got {self.groups}")
        for name in ("margin_m", "reaction_s", "min_speed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.deceleration <= 0:
            raise ValueError(f"deceleration must be positive, got {self.deceleration}")

    @classmethod
    def from_any(cls, value: EmergencyBrakeConfig | dict[str, Any] | bool | None) -> EmergencyBrakeConfig | None:
        """The brake of the env option: None or False (no brake), True (the defaults), a config, or a dict of its
        fields (`gaps` a `RoadUserGapConfig` or a dict of its fields, as JSON and RLlib's `env_config` give them)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"expected true, false, an EmergencyBrakeConfig or a dict of its fields, got {value!r}")
        fields = dict(value)
        if isinstance(fields.get("gaps"), dict):
            fields["gaps"] = RoadUserGapConfig(**fields["gaps"])
        if "groups" in fields:
            fields["groups"] = tuple(fields["groups"])
        return cls(**fields)

    def with_changes(self, changes: Sequence[str]) -> EmergencyBrakeConfig:
        """This brake with `FIELD=VALUE` changes, as command lines give them, to its own fields or its gaps'
        (`groups` a comma-separated list, `min_cells` an integer, the others numbers). Raises ValueError naming
        the change that is not one of those fields or values, or that the brake refuses."""
        gap_fields = {f.name for f in fields(RoadUserGapConfig)}
        known = gap_fields | {f.name for f in fields(self)} - {"gaps"}
        own: dict[str, Any] = {}
        gaps: dict[str, Any] = {}
        for change in changes:
            key, sep, value = change.partition("=")
            if not sep or key not in known:
                raise ValueError(f"{change!r} is not FIELD=VALUE with a field of {', '.join(sorted(known))}")
            try:
                parsed = (
                    tuple(value.split(",")) if key == "groups" else int(value) if key == "min_cells" else float(value)
                )
            except ValueError:
                raise ValueError(f"{change!r} has no number for {key}") from None
            (gaps if key in gap_fields else own)[key] = parsed
        return replace(self, gaps=replace(self.gaps, **gaps), **own)

    def stopping_distance(self, speed: float) -> float:
        """Metres from the bumper within which a road user makes the brake act at `speed` m/s."""
        speed = max(speed, 0.0)
        return speed * self.reaction_s + speed * speed / (2.0 * self.deceleration) + self.margin_m

    def brakes(self, obs: dict[str, np.ndarray], camera: tuple[tuple[float, float, float], float]) -> bool:
        """Whether the brake acts after observation `obs` (one env's), taken by a camera at `camera`
        ((location, fov), as `EnvConfig.camera_geometry` gives it)."""
        speed = float(obs["state"][0]) * STATE_SPEED_SCALE
        if speed <= self.min_speed:
            return False
        gaps = road_user_gaps(obs["semantic"][None], obs["depth"][None], obs["route"][None], *camera, self.gaps)[0]
        nearest = min(float(gaps[ROAD_USER_GROUPS.index(g)]) for g in self.groups)
        return nearest < self.stopping_distance(speed)


def with_brake(action: np.ndarray) -> np.ndarray:
    """The (steer, acceleration) `action` with a full brake in place of its acceleration, its steering kept."""
    return np.array([action[0], -1.0], dtype=np.float32)


def mark_braked(picture: np.ndarray) -> np.ndarray:
    """A copy of dashboard `picture` framed in red and captioned: the brake acted on the step it shows."""
    picture = np.ascontiguousarray(picture).copy()
    cv2.rectangle(picture, (1, 1), (picture.shape[1] - 2, picture.shape[0] - 2), BRAKE_COLOUR, 3)
    cv2.putText(picture, "EMERGENCY BRAKE", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, BRAKE_COLOUR, 1, cv2.LINE_AA)
    return picture
