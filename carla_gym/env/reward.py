"""The driving reward of `CarlaPerception-v0`, term by term.

By default route progress is the only term that pays (1 per metre), and every way an episode can go
wrong costs: each infraction of the step (collision, leaving the road, a red light, a lane invasion)
and ending the episode off the route or blocked. No ending is free and nothing pays for time, so an
agent can neither collect reward by standing or crawling nor escape per-step costs by ending the
episode early: the simple progress-plus-penalties view of CaRL (Jaeger et al., 2025).

Roach's (Zhang et al., ICCV 2021) dense terms are there with weight 0 by default: speed tracking
(`1 - |v - v_target| / cruise_speed`, the target dropping linearly to zero over `slowdown_distance`
metres before a lead vehicle, a pedestrian or a red light's stop line), lateral offset and heading
error. The speed term comes in two forms (`RewardConfig.speed_term`): Roach's `"bonus"`, `speed x
tracking`, pays for every step driven near the target, which makes standing still free and
finishing a route cost the steps it would still have paid; `"penalty"`, `speed x (tracking - 1)`,
is zero at the target and negative away from it. What each choice does to PPO from scratch is in the
docs' experiment log.
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

    progress: float = _weight(1.0, "reward per metre of route progress")
    speed: float = _weight(0.0, "weight of the speed term (per step; Roach: 0.2 with the bonus form)")
    speed_term: str = _weight(
        "bonus",
        "bonus: speed x tracking, Roach's (pays every step near the target speed); "
        "penalty: speed x (tracking - 1), zero at the target and negative away from it",
    )
    lateral: float = _weight(0.0, "penalty per metre of lateral offset from the route (per step)")
    heading: float = _weight(0.0, "penalty per radian of heading error (per step)")
    collision: float = _weight(10.0, "penalty per collision")
    off_road: float = _weight(5.0, "penalty for leaving the road")
    red_light: float = _weight(5.0, "penalty per red light run")
    lane_invasion: float = _weight(1.0, "penalty per lane invasion")
    off_route: float = _weight(10.0, "penalty when the episode ends for straying too far from the route")
    blocked: float = _weight(10.0, "penalty when the episode ends for standing still with nothing to wait for")
    cruise_speed: float = _weight(8.0, "target speed on a free road (m/s)")
    stop_margin: float = _weight(5.0, "distance before a hazard where the target speed reaches 0 (m)")
    slowdown_distance: float = _weight(20.0, "distance over which the target falls from cruise speed to 0 (m)")

    def __post_init__(self) -> None:
        if self.speed_term not in SPEED_TERMS:
            raise ValueError(f"RewardConfig.speed_term must be one of {SPEED_TERMS}, got {self.speed_term!r}")
        for name in ("cruise_speed", "slowdown_distance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RewardConfig.{name} must be > 0, got {getattr(self, name)!r}")

    @classmethod
    def roach(cls, **changes: Any) -> RewardConfig:
        """Roach's dense shape, the env's earlier default reward: 0.1 per metre of progress, the speed bonus
        (0.2 per step at the target), lateral and heading penalties, endings off the route or blocked free."""
        weights = dict(
            progress=0.1, speed=0.2, speed_term="bonus", lateral=0.1, heading=0.2, off_route=0.0, blocked=0.0
        )
        return cls(**{**weights, **changes})

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


def waiting(hazards: Hazards, config: RewardConfig) -> bool:
    """Whether standing still is waiting for something: a red light's stop line or a road user within
    the distance where the speed target is below cruise speed (`stop_margin + slowdown_distance`).

    A driver may stop a few metres short of where the speed target reaches 0, so a stop anywhere in
    that zone counts as waiting, not as being blocked."""
    return min(hazards.lead, hazards.red_light) < config.stop_margin + config.slowdown_distance


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
