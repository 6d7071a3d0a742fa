"""The driving reward of `CarlaPerception-v0`, term by term.

Per step: `progress * metres of route gained + speed * speed_tracking - lateral * |offset| -
heading * |heading error|`, minus a penalty for each infraction of the step. Speed tracking is
`1 - |v - v_target| / cruise_speed` (1 at the target, negative when far from it), and the target
drops linearly to zero over `slowdown_distance` metres before a lead vehicle, a pedestrian or a
red light's stop line, so that stopping for them is rewarded rather than punished. The shape
follows Roach (Zhang et al., ICCV 2021): dense speed / position / rotation terms and terminal
infraction penalties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..sim.contract import EventKind, Frame, Hazards


@dataclass
class RewardConfig:
    """Weights of the reward terms and the speed target's parameters (defaults as in the README)."""

    progress: float = 0.1  # per metre of route progress
    speed: float = 0.2  # per step, times speed tracking in [-inf, 1]
    lateral: float = 0.1  # per metre of lateral offset from the route
    heading: float = 0.2  # per radian of heading error
    collision: float = 10.0
    off_road: float = 5.0
    red_light: float = 5.0
    lane_invasion: float = 1.0
    cruise_speed: float = 8.0  # m/s on a free road
    stop_margin: float = 5.0  # m before a hazard where the target reaches 0
    slowdown_distance: float = 20.0  # m over which the target falls from cruise to 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_any(cls, value: RewardConfig | dict[str, float] | None) -> RewardConfig:
        """A RewardConfig from a config, a dict of its fields, or None (the defaults)."""
        return cls(**value) if isinstance(value, dict) else (value or cls())


def target_speed(hazards: Hazards, config: RewardConfig) -> float:
    """The speed to drive at (m/s): cruise speed, falling to 0 at `stop_margin` before the nearest hazard."""
    gap = min(hazards.lead, hazards.red_light) - config.stop_margin
    return config.cruise_speed * min(max(gap / config.slowdown_distance, 0.0), 1.0)


def reward_terms(
    frame: Frame, progress_m: float, offset_m: float, heading_rad: float, config: RewardConfig
) -> dict[str, float]:
    """Each term of the step's reward (already weighted and signed); the reward is their sum."""
    v_target = target_speed(frame.hazards, config)
    tracking = 1.0 - abs(frame.speed - v_target) / config.cruise_speed
    kinds = [e.kind for e in frame.events]
    return {
        "progress": config.progress * progress_m,
        "speed": config.speed * tracking,
        "lateral": -config.lateral * abs(offset_m),
        "heading": -config.heading * abs(heading_rad),
        "collision": -config.collision * (EventKind.COLLISION in kinds),
        "off_road": -config.off_road * (EventKind.OFF_ROAD in kinds),
        "red_light": -config.red_light * kinds.count(EventKind.RED_LIGHT),
        "lane_invasion": -config.lane_invasion * kinds.count(EventKind.LANE_INVASION),
    }
