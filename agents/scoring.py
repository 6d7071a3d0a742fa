"""Scoring episodes like the CARLA leaderboard: route completion, infractions per km, driving score.

An episode's driving score is `route completion x infraction penalty`, where the penalty starts at
1 and is multiplied by a factor for every infraction: 0.50 per collision with a pedestrian, 0.60
with a vehicle, 0.65 with a static object, 0.70 per red light run (the CARLA leaderboard's
factors). Lane invasions and leaving the road cost no factor (`NOT_PENALISED`): they are counted and
reported per km only. The overall score is the mean over episodes.

Named route sets (`ROUTE_SETS`) fix which routes a score is over, so rows of a table compare like
with like: every seed of `reset(seed=...)` on a split is one route; `test30` joins `test10` and
`test20`, the test town's two published sets, and its summary reports each part on its own too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from carla_gym.env.contracts import Infraction

PENALTY_FACTORS: dict[Infraction, float] = {
    Infraction.COLLISION_PEDESTRIAN: 0.50,
    Infraction.COLLISION_VEHICLE: 0.60,
    Infraction.COLLISION_STATIC: 0.65,
    Infraction.RED_LIGHT: 0.70,
}
# Infractions counted but not multiplied into the penalty; every infraction is in exactly one of the two.
NOT_PENALISED: frozenset[Infraction] = frozenset({Infraction.LANE_INVASION, Infraction.OFF_ROAD})
COLLISIONS: frozenset[Infraction] = frozenset(i for i in Infraction if i.is_collision)


@dataclass(frozen=True)
class RouteSet:
    """Evaluation routes: the town split and one episode seed per route; `parts` names the sets it joins."""

    split: str
    seeds: tuple[int, ...]
    parts: tuple[str, ...] = ()


ROUTE_SETS: dict[str, RouteSet] = {
    "test10": RouteSet("test", tuple(range(10))),
    "test20": RouteSet("test", tuple(range(100, 120))),
}
ROUTE_SETS["test30"] = RouteSet("test", ROUTE_SETS["test10"].seeds + ROUTE_SETS["test20"].seeds, ("test10", "test20"))


@dataclass
class EpisodeResult:
    """What one evaluation episode produced (from the env's final `info`)."""

    route_completion: float  # in [0, 1]
    distance_m: float
    infractions: dict[str, int] = field(default_factory=dict)  # `Infraction` values as keys, as in `info`
    steps: int = 0
    termination: str | None = None
    crossing_m: float | None = None  # where a pedestrian was sent across the route (the env's pedestrian_crossings)
    emergency_brake_steps: int = 0  # steps on which the env's emergency brake braked for the policy

    @property
    def infraction_penalty(self) -> float:
        penalty = 1.0
        for name, factor in PENALTY_FACTORS.items():
            penalty *= factor ** self.infractions.get(name, 0)
        return penalty

    @property
    def driving_score(self) -> float:
        return self.route_completion * self.infraction_penalty


def summarize(episodes: list[EpisodeResult]) -> dict[str, Any]:
    """Leaderboard-style summary: means over episodes, and infractions per km over all distance driven."""
    if not episodes:
        raise ValueError("no episodes to summarize")
    n = len(episodes)
    km = sum(e.distance_m for e in episodes) / 1000.0
    totals: dict[str, int] = {}
    for e in episodes:
        for name, count in e.infractions.items():
            totals[name] = totals.get(name, 0) + count
    per_km = {
        name: (count / km if km > 0 else float("inf") if count else 0.0) for name, count in sorted(totals.items())
    }
    collisions = sum(c for name, c in totals.items() if name in COLLISIONS)
    return {
        "episodes": n,
        "driving_score": sum(e.driving_score for e in episodes) / n,
        "route_completion": sum(e.route_completion for e in episodes) / n,
        "infraction_penalty": sum(e.infraction_penalty for e in episodes) / n,
        "distance_km": km,
        "collisions_per_km": collisions / km if km > 0 else (float("inf") if collisions else 0.0),
        "infractions_per_km": per_km,
        "penalty_factors": {name.value: factor for name, factor in PENALTY_FACTORS.items()},
        "episodes_detail": [asdict(e) | {"driving_score": e.driving_score} for e in episodes],
    }
