"""The town catalogue: the named towns, their train/val/test splits and random towns drawn from a seed.

A `TownSpec` says how to generate a town; `network.build_network` turns it into roads and lanes and
`world.build_world` into the full static world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CATALOGUE", "SPLITS", "WORLD_VERSION", "TownSpec", "town_spec", "training_seeds"]


@dataclass(frozen=True)
class TownSpec:
    """How to generate one town: the layout family and its style parameters."""

    name: str
    seed: int
    layout: str  # "grid", "ring", "organic", "ladder"
    nx: int = 4
    ny: int = 4
    block: float = 80.0
    jitter: float = 0.0  # node position noise, metres
    drop_edges: float = 0.0  # share of removable edges removed (makes T junctions)
    curve: float = 0.0  # bulge of curved roads, share of road length
    two_lane_share: float = 0.0  # share of roads with 2 lanes per direction
    speed_limit: float = 8.3  # m/s
    building_height: tuple[float, float] = (5.0, 12.0)
    building_density: float = 0.8  # chance a frontage slot gets a building
    interior: str = "trees"  # what fills block interiors: "trees", "buildings", "yards", "mixed"
    boundary: str = "fence"  # lot boundaries: "fence", "wall", "hedge", "mixed"
    water: bool = False
    rail: bool = False
    guard_rails: bool = False
    palette: int = 0  # building colour family


# Named towns. Their layouts differ in topology (grid, ring with spokes, organic curves, ladder),
# road widths, building heights and what fills the blocks, so a model trained on the train towns
# is tested on something it has not seen. Never evaluate on a training town.
CATALOGUE: dict[str, TownSpec] = {
    t.name: t
    for t in (
        TownSpec(
            "grid_suburb",
            101,
            "grid",
            4,
            4,
            75.0,
            interior="yards",
            boundary="hedge",
            building_height=(4.0, 8.0),
            building_density=0.7,
            rail=True,
            palette=0,
        ),
        TownSpec(
            "ring_boulevard",
            202,
            "ring",
            block=70.0,
            two_lane_share=0.5,
            building_height=(8.0, 20.0),
            interior="mixed",
            boundary="wall",
            water=True,
            guard_rails=True,
            palette=1,
            speed_limit=11.0,
        ),
        TownSpec(
            "offset_downtown",
            303,
            "grid",
            5,
            4,
            65.0,
            jitter=9.0,
            two_lane_share=0.6,
            building_height=(12.0, 40.0),
            building_density=0.95,
            interior="buildings",
            boundary="wall",
            palette=2,
        ),
        TownSpec(
            "winding_hills",
            404,
            "organic",
            4,
            3,
            90.0,
            jitter=14.0,
            curve=0.18,
            drop_edges=0.25,
            building_height=(4.0, 7.0),
            building_density=0.35,
            interior="trees",
            boundary="fence",
            guard_rails=True,
            palette=3,
        ),
        TownSpec(
            "industrial_park",
            505,
            "grid",
            3,
            3,
            120.0,
            two_lane_share=0.4,
            building_height=(6.0, 14.0),
            building_density=0.6,
            interior="yards",
            boundary="wall",
            rail=True,
            palette=4,
            speed_limit=10.0,
        ),
        TownSpec(
            "lakeside_village",
            606,
            "grid",
            4,
            4,
            80.0,
            jitter=6.0,
            drop_edges=0.35,
            curve=0.08,
            building_height=(4.0, 9.0),
            building_density=0.55,
            interior="trees",
            boundary="mixed",
            water=True,
            palette=5,
        ),
        TownSpec(
            "market_crossroads",
            707,
            "grid",
            4,
            4,
            70.0,
            jitter=4.0,
            drop_edges=0.2,
            two_lane_share=0.3,
            building_height=(6.0, 18.0),
            building_density=0.85,
            interior="mixed",
            boundary="mixed",
            palette=6,
        ),
        TownSpec(
            "harbour_district",
            808,
            "ladder",
            5,
            2,
            85.0,
            jitter=5.0,
            curve=0.05,
            two_lane_share=0.5,
            building_height=(8.0, 25.0),
            building_density=0.75,
            interior="buildings",
            boundary="fence",
            water=True,
            rail=True,
            guard_rails=True,
            palette=7,
        ),
    )
}

# Version of how the towns look; recordings cached under an older version are not reused.
# 2: rail line through the town with level crossings, waterfront at the outer road, more rail and water.
WORLD_VERSION = 2

SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "grid_suburb",
        "ring_boulevard",
        "offset_downtown",
        "winding_hills",
        "industrial_park",
        "lakeside_village",
    ),
    "val": ("market_crossroads",),
    "test": ("harbour_district",),
}


def training_seeds(count: int, start: int = 1000) -> list[int]:
    """Seeds of `count` random towns for training: none shares the building palette of a val or test
    town, nor the test town's layout, so held-out towns stay unseen."""
    held_out = [CATALOGUE[t] for s in ("val", "test") for t in SPLITS[s]]
    palettes = {t.palette for t in held_out}
    layouts = {CATALOGUE[t].layout for t in SPLITS["test"]} - {CATALOGUE[t].layout for t in SPLITS["train"]}
    seeds: list[int] = []
    seed = start
    while len(seeds) < count:
        spec = town_spec(seed)
        if spec.palette not in palettes and spec.layout not in layouts:
            seeds.append(seed)
        seed += 1
    return seeds


def town_spec(town: str | int) -> TownSpec:
    """The spec of a named town, or a random spec drawn from an integer seed."""
    if isinstance(town, str):
        if town not in CATALOGUE:
            raise ValueError(
                f"unknown embedded town {town!r}; named towns: {', '.join(CATALOGUE)} (or pass an int seed)"
            )
        return CATALOGUE[town]
    if isinstance(town, bool) or not isinstance(town, (int, np.integer)) or town < 0:
        raise ValueError(f"embedded town must be a town name or a non-negative int seed, got {town!r}")
    seed = int(town)
    rng = np.random.default_rng(seed)
    layout = str(rng.choice(["grid", "ring", "organic", "ladder"]))
    return TownSpec(
        name=f"seed_{seed}",
        seed=seed,
        layout=layout,
        nx=int(rng.integers(3, 6)),
        ny=int(rng.integers(2, 5)),
        block=float(rng.uniform(60, 100)),
        jitter=float(rng.uniform(0, 12)),
        drop_edges=float(rng.uniform(0, 0.3)),
        curve=float(rng.uniform(0, 0.15)),
        two_lane_share=float(rng.uniform(0, 0.6)),
        building_height=(float(rng.uniform(4, 8)), float(rng.uniform(10, 30))),
        building_density=float(rng.uniform(0.4, 0.95)),
        interior=str(rng.choice(["trees", "buildings", "yards", "mixed"])),
        boundary=str(rng.choice(["fence", "wall", "hedge", "mixed"])),
        water=bool(rng.random() < 0.4),
        rail=bool(rng.random() < 0.3),
        guard_rails=bool(rng.random() < 0.5),
        palette=int(rng.integers(0, 8)),
    )
