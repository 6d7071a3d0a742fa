"""The driving reward of `CarlaPerception-v0`, term by term.

Per step: `progress * metres of route gained + speed term - lateral * |offset| - heading * |heading
error|`, minus a penalty for each infraction of the step. Speed tracking is `1 - |v - v_target| /
cruise_speed` (1 at the target, negative when far from it), and the target drops linearly to zero
over `slowdown_distance` metres before a lead vehicle, a pedestrian or a red light's stop line, so
that stopping for them is rewarded rather than punished. The shape follows Roach (Zhang et al.,
ICCV 2021): dense speed / position / rotation terms and terminal infraction penalties.

The speed term comes in two forms (`RewardConfig.speed_term`). Roach's `"bonus"`, `speed x
tracking`, pays for every step driven near the target speed; in an env whose episodes end when the
route is done, that makes finishing a route cost every step it would still have paid, and driving
slowly pays almost as much per step as driving at the target, for more steps. `"penalty"`, `speed
x (tracking - 1)`, is zero at the target and negative away from it, so route progress is the only
term that pays and a route finished sooner is never worth less (the simple-reward view of CaRL,
Jaeger et al. 2025).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..sim.contract import EventKind, Frame, Hazards

SPEED_TERMS: tuple[str, ...] = ("bonus", "penalty")


def _weight(default: Any, help: str) -> Any:
    """A RewardConfig field with its help text (agents' CLIs make one `--reward-*` flag per field)."""
    return field(default=default, metadata={"help": help})


@dataclass
class RewardConfig:
    """Weights of the reward terms and the speed target's parameters."""

    progress: float = _weight(0.1, "reward per metre of route progress")
    speed: float = _weight(0.2, "weight of the speed term (per step)")
    speed_term: str = _weight(
        "bonus",
        "bonus: speed x tracking, Roach's (pays every step near the target speed); "
        "penalty: speed x (tracking - 1), zero at the target and negative away from it",
    )
    lateral: float = _weight(0.1, "penalty per metre of lateral offset from the route (per step)")
    heading: float = _weight(0.2, "penalty per radian of heading error (per step)")
    collision: float = _weight(10.0, "penalty per collision")
    off_road: float = _weight(5.0, "penalty for leaving the road")
    red_light: float = _weight(5.0, "penalty per red light run")
    lane_invasion: float = _weight(1.0, "penalty per lane invasion")
    off_route: float = _weight(0.0, "penalty when the episode ends for straying too far from the route")
    blocked: float = _weight(0.0, "penalty when the episode ends for standing still with nothing to wait for")
    cruise_speed: float = _weight(8.0, "target speed on a free road (m/s)")
    stop_margin: float = _weight(5.0, "distance before a hazard where the target speed reaches 0 (m)")
    slowdown_distance: float = _weight(20.0, "distance over which the target falls from cruise speed to 0 (m)")

    def __post_init__(self) -> None:
        if self.speed_term not in SPEED_TERMS:
            raise ValueError(f"RewardConfig.speed_term must be one of {SPEED_TERMS}, got {self.speed_term!r}")
        for name in ("cruise_speed", "slowdown_distance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RewardConfig.{name} must be > 0, got {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, value: RewardConfig | dict[str, Any] | None) -> RewardConfig:
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
        "speed": config.speed * (tracking - 1.0 if config.speed_term == "penalty" else tracking),
        "lateral": -config.lateral * abs(offset_m),
        "heading": -config.heading * abs(heading_rad),
        "collision": -config.collision * (EventKind.COLLISION in kinds),
        "off_road": -config.off_road * (EventKind.OFF_ROAD in kinds),
        "red_light": -config.red_light * kinds.count(EventKind.RED_LIGHT),
        "lane_invasion": -config.lane_invasion * kinds.count(EventKind.LANE_INVASION),
    }


def termination_terms(termination: str | None, config: RewardConfig) -> dict[str, float]:
    """The penalties for how an episode ended, for the endings that are no infraction event (collisions and
    leaving the road are penalised as events): straying from the route and standing blocked. Without them,
    ending an episode that way is free, which an agent paying per-step costs learns to use."""
    return {
        "off_route": -config.off_route * (termination == "off_route"),
        "blocked": -config.blocked * (termination == "blocked"),
    }
