"""The town catalogue and the procedural road network: junctions, roads, lanes and connectors.

Coordinates are CARLA's (Unreal): x, y on the ground, z up, left-handed, so a heading `yaw`
points along (cos yaw, sin yaw) and the right-hand side of that heading is (-sin yaw, cos yaw).
Traffic drives on the right.

A town is a graph of junction nodes joined by roads (polylines, straight or curved). Every road
has 1 or 2 lanes per direction. Lanes end `trim` metres before a junction centre; connector lanes
(quadratic Bezier curves) join each incoming lane to the lanes of the other roads there, so every
vehicle path is a chain of lane polylines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 3.0
STOP_BACK = 4.0  # stop line this far before the end of an incoming lane


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
        TownSpec("grid_suburb", 101, "grid", 4, 4, 75.0, interior="yards", boundary="hedge",
                 building_height=(4.0, 8.0), building_density=0.7, rail=True, palette=0),
        TownSpec("ring_boulevard", 202, "ring", block=70.0, two_lane_share=0.5, building_height=(8.0, 20.0),
                 interior="mixed", boundary="wall", water=True, guard_rails=True, palette=1, speed_limit=11.0),
        TownSpec("offset_downtown", 303, "grid", 5, 4, 65.0, jitter=9.0, two_lane_share=0.6,
                 building_height=(12.0, 40.0), building_density=0.95, interior="buildings", boundary="wall", palette=2),
        TownSpec("winding_hills", 404, "organic", 4, 3, 90.0, jitter=14.0, curve=0.18, drop_edges=0.25,
                 building_height=(4.0, 7.0), building_density=0.35, interior="trees", boundary="fence",
                 guard_rails=True, palette=3),
        TownSpec("industrial_park", 505, "grid", 3, 3, 120.0, two_lane_share=0.4, building_height=(6.0, 14.0),
                 building_density=0.6, interior="yards", boundary="wall", rail=True, palette=4, speed_limit=10.0),
        TownSpec("lakeside_village", 606, "grid", 4, 4, 80.0, jitter=6.0, drop_edges=0.35, curve=0.08,
                 building_height=(4.0, 9.0), building_density=0.55, interior="trees", boundary="mixed",
                 water=True, palette=5),
        TownSpec("market_crossroads", 707, "grid", 4, 4, 70.0, jitter=4.0, drop_edges=0.2, two_lane_share=0.3,
                 building_height=(6.0, 18.0), building_density=0.85, interior="mixed", boundary="mixed", palette=6),
        TownSpec("harbour_district", 808, "ladder", 5, 2, 85.0, jitter=5.0, curve=0.05, two_lane_share=0.5,
                 building_height=(8.0, 25.0), building_density=0.75, interior="buildings", boundary="fence",
                 water=True, rail=True, guard_rails=True, palette=7),
    )
}

# Version of how the towns look; recordings cached under an older version are not reused.
# 2: rail line through the town with level crossings, waterfront at the outer road, more rail and water.
WORLD_VERSION = 2

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("grid_suburb", "ring_boulevard", "offset_downtown", "winding_hills", "industrial_park", "lakeside_village"),
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
            raise ValueError(f"unknown embedded town {town!r}; named towns: {', '.join(CATALOGUE)} (or pass an int seed)")
        return CATALOGUE[town]
    seed = int(town)
    rng = np.random.default_rng(seed)
    layout = str(rng.choice(["grid", "ring", "organic", "ladder"]))
    return TownSpec(
        name=f"seed_{seed}", seed=seed, layout=layout, nx=int(rng.integers(3, 6)), ny=int(rng.integers(2, 5)),
        block=float(rng.uniform(60, 100)), jitter=float(rng.uniform(0, 12)), drop_edges=float(rng.uniform(0, 0.3)),
        curve=float(rng.uniform(0, 0.15)), two_lane_share=float(rng.uniform(0, 0.6)),
        building_height=(float(rng.uniform(4, 8)), float(rng.uniform(10, 30))),
        building_density=float(rng.uniform(0.4, 0.95)),
        interior=str(rng.choice(["trees", "buildings", "yards", "mixed"])),
        boundary=str(rng.choice(["fence", "wall", "hedge", "mixed"])),
        water=bool(rng.random() < 0.4), rail=bool(rng.random() < 0.3), guard_rails=bool(rng.random() < 0.5),
        palette=int(rng.integers(0, 8)),
    )


# ---------------------------------------------------------------------------------------------
# Polylines


def polyline_lengths(points: np.ndarray) -> np.ndarray:
    """Cumulative arc length at each point of an (N, 2) polyline."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def resample(points: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points of a polyline at arc lengths `s` (clamped)."""
    cum = polyline_lengths(points)
    s = np.clip(s, 0.0, cum[-1])
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=-1)


def normals(points: np.ndarray) -> np.ndarray:
    """Unit right-hand normals (-dy, dx) at each polyline point (averaged at inner points)."""
    d = np.gradient(points, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return np.stack([-d[:, 1], d[:, 0]], axis=-1)


def offset(points: np.ndarray, distance: float) -> np.ndarray:
    """A polyline shifted `distance` metres to its right."""
    return points + normals(points) * distance


def bezier(p0: np.ndarray, c: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    """n points of the quadratic Bezier p0 -> p2 with control point c."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


# ---------------------------------------------------------------------------------------------
# Network


@dataclass
class Road:
    """A two-way road between junctions `a` and `b`; `points` is its centre line a -> b, trimmed."""

    a: int
    b: int
    points: np.ndarray
    lanes: int
    full: np.ndarray  # untrimmed centre line, node to node

    @property
    def half_width(self) -> float:
        return self.lanes * LANE_WIDTH


@dataclass
class Lane:
    """One directed lane polyline. Road lanes belong to a road; connectors cross a junction."""

    points: np.ndarray
    road: int  # -1 for connectors
    junction: int  # for a road lane, the junction it ends at; for a connector, the one it crosses
    successors: list[int] = field(default_factory=list)
    approach: int = -1  # for road lanes: index of the road among its end junction's approaches

    def __post_init__(self) -> None:
        self.cum = polyline_lengths(self.points)
        self.length = float(self.cum[-1])


@dataclass
class Network:
    """Junctions, roads and the lane graph of a town."""

    nodes: np.ndarray  # (J, 2)
    roads: list[Road]
    lanes: list[Lane]
    node_roads: list[list[int]]  # roads at each junction, ordered by angle (the light phase order)
    trims: np.ndarray  # junction radius per node

    @property
    def signalised(self) -> np.ndarray:
        """Junctions with traffic lights (three or more roads)."""
        return np.array([len(r) >= 3 for r in self.node_roads])

    def road_lanes(self) -> list[int]:
        return [i for i, lane in enumerate(self.lanes) if lane.road >= 0]


def _layout_graph(spec: TownSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Junction positions and edges (a, b, shape) for the spec's layout family."""
    edges: list[tuple[int, int, str]] = []
    if spec.layout == "ring":
        r1, r2 = spec.block * 0.9, spec.block * 2.2
        pts = [(0.0, 0.0)]
        pts += [(r1 * math.cos(a), r1 * math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
        pts += [(r2 * math.cos(a), r2 * math.sin(a)) for a in np.arange(8) * math.pi / 4 + math.pi / 4]
        for i in range(4):
            edges.append((0, 1 + i, "straight"))
            edges.append((1 + i, 1 + (i + 1) % 4, "arc"))
            edges.append((1 + i, 5 + 2 * i, "straight"))
        for i in range(8):
            edges.append((5 + i, 5 + (i + 1) % 8, "arc"))
        return np.array(pts), edges
    nx, ny = spec.nx, spec.ny
    xs = np.cumsum(np.r_[0.0, rng.uniform(0.8, 1.25, nx - 1) * spec.block])
    ys = np.cumsum(np.r_[0.0, rng.uniform(0.8, 1.25, ny - 1) * spec.block])
    if spec.layout == "ladder":  # a long avenue pair with rungs: long narrow blocks
        ys = np.cumsum(np.r_[0.0, np.full(ny - 1, spec.block * 1.6)])
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    grid = grid + rng.uniform(-spec.jitter, spec.jitter, grid.shape)
    idx = lambda i, j: i * ny + j  # noqa: E731
    for i in range(nx):
        for j in range(ny):
            if i + 1 < nx:
                edges.append((idx(i, j), idx(i + 1, j), "curve" if spec.curve > 0 else "straight"))
            if j + 1 < ny:
                edges.append((idx(i, j), idx(i, j + 1), "curve" if spec.curve > 0 else "straight"))
    if spec.drop_edges > 0:
        candidates = [edges[m] for m in rng.permutation(len(edges))]
        n_drop = int(spec.drop_edges * len(edges))
        for edge in candidates:
            if n_drop == 0:
                break
            trial = [e for e in edges if e != edge]
            deg = np.bincount(np.array([(a, b) for a, b, _ in trial]).ravel(), minlength=len(grid))
            if deg[edge[0]] >= 2 and deg[edge[1]] >= 2 and _connected(len(grid), trial):
                edges = trial
                n_drop -= 1
    return grid - grid.mean(axis=0), edges


def _connected(n: int, edges: list[tuple[int, int, str]]) -> bool:
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b, _ in edges:
        adj[a].append(b)
        adj[b].append(a)
    seen, stack = {0}, [0]
    while stack:
        for m in adj[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return len(seen) == n


def _edge_polyline(p: np.ndarray, q: np.ndarray, shape: str, spec: TownSpec, rng: np.random.Generator) -> np.ndarray:
    length = float(np.linalg.norm(q - p))
    n = max(2, int(length / 2.0) + 1)
    if shape == "arc":  # around the town centre (origin for ring layouts)
        r0, r1 = np.linalg.norm(p), np.linalg.norm(q)
        a0, a1 = math.atan2(p[1], p[0]), math.atan2(q[1], q[0])
        da = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
        n = max(8, int(abs(da) * max(r0, r1) / 2.0))
        t = np.linspace(0, 1, n)
        r = r0 + (r1 - r0) * t
        return np.stack([r * np.cos(a0 + da * t), r * np.sin(a0 + da * t)], axis=-1)
    if shape == "curve":
        d = (q - p) / length
        bulge = rng.uniform(-1, 1) * spec.curve * length
        c = (p + q) / 2 + np.array([-d[1], d[0]]) * bulge
        return bezier(p, c, q, n)
    t = np.linspace(0, 1, n)[:, None]
    return p + (q - p) * t


def _trim(points: np.ndarray, start: float, end: float) -> np.ndarray:
    cum = polyline_lengths(points)
    s = np.concatenate([[start], cum[(cum > start) & (cum < cum[-1] - end)], [cum[-1] - end]])
    return resample(points, s)


@lru_cache(maxsize=16)
def build_network(spec: TownSpec) -> Network:
    """Generate the road network and lane graph of a town (cached: towns are immutable)."""
    rng = np.random.default_rng(spec.seed)
    nodes, edges = _layout_graph(spec, rng)
    two_lane = rng.random(len(edges)) < spec.two_lane_share
    if spec.layout == "ladder":  # the two long avenues are the wide roads
        two_lane = np.array([abs(nodes[a][1] - nodes[b][1]) < 1.0 for a, b, _ in edges]) | (two_lane & False)
    fulls = [_edge_polyline(nodes[a], nodes[b], shape, spec, rng) for a, b, shape in edges]
    lanes_per = [2 if t else 1 for t in two_lane]
    node_edges: list[list[int]] = [[] for _ in range(len(nodes))]
    for k, (a, b, _) in enumerate(edges):
        node_edges[a].append(k)
        node_edges[b].append(k)
    trims = np.zeros(len(nodes))
    for n, ks in enumerate(node_edges):
        hw = max(lanes_per[k] for k in ks) * LANE_WIDTH
        trims[n] = hw + (6.0 if len(ks) >= 3 else 8.0)
    roads = [
        Road(a, b, _trim(full, trims[a], trims[b]), lanes_per[k], full)
        for k, ((a, b, _), full) in enumerate(zip(edges, fulls))
    ]

    # Order each junction's roads by the angle they leave it at: the traffic-light phase order.
    def leave_dir(k: int, n: int) -> np.ndarray:
        pts = roads[k].points if roads[k].a == n else roads[k].points[::-1]
        d = pts[0] - nodes[n]
        return d / max(np.linalg.norm(d), 1e-9)

    node_roads = [sorted(ks, key=lambda k, n=n: math.atan2(*leave_dir(k, n)[::-1])) for n, ks in enumerate(node_edges)]

    lanes: list[Lane] = []
    incoming: dict[int, list[tuple[int, int, int]]] = {n: [] for n in range(len(nodes))}  # (lane, road, index)
    outgoing: dict[int, list[tuple[int, int, int]]] = {n: [] for n in range(len(nodes))}
    for k, road in enumerate(roads):
        for direction, (start, end) in enumerate(((road.a, road.b), (road.b, road.a))):
            centre = road.points if direction == 0 else road.points[::-1]
            for i in range(road.lanes):
                pts = offset(centre, (i + 0.5) * LANE_WIDTH)
                lane = Lane(pts, k, end, approach=node_roads[end].index(k))
                incoming[end].append((len(lanes), k, i))
                outgoing[start].append((len(lanes), k, i))
                lanes.append(lane)
    for n in range(len(nodes)):
        for lin, kin, iin in incoming[n]:
            outs = [(lo, ko, io) for lo, ko, io in outgoing[n] if ko != kin]
            if not outs:  # dead end: allow a U-turn
                outs = [(lo, ko, io) for lo, ko, io in outgoing[n]]
            n_in = roads[kin].lanes
            n_out = {ko: max(io for _, k2, io in outs if k2 == ko) + 1 for _, ko, _ in outs}
            d_in = lanes[lin].points[-1] - lanes[lin].points[-2]
            links = []
            for lo, ko, io in outs:
                d_out = lanes[lo].points[1] - lanes[lo].points[0]
                a, b = d_in / np.linalg.norm(d_in), d_out / np.linalg.norm(d_out)
                turn = float(a[0] * b[1] - a[1] * b[0])  # > 0: a right turn (yaw grows)
                kind = "straight" if abs(turn) < 0.5 and d_in @ d_out > 0 else ("right" if turn > 0 else "left")
                # With two lanes in, the left lane (0) goes straight or left and the right lane straight
                # or right, so paths from one approach never cross. Turns end in the nearest lane.
                if n_in == 2 and ((iin == 0 and kind == "right") or (iin == 1 and kind == "left")):
                    continue
                want = {"straight": min(iin, n_out[ko] - 1), "left": 0, "right": n_out[ko] - 1}[kind]
                if io == want:
                    links.append((lo, ko, io))
            if not links:
                links = [(lo, ko, io) for lo, ko, io in outs if io == 0]
            for lo, ko, io in links:
                p0, p2 = lanes[lin].points[-1], lanes[lo].points[0]
                d0 = lanes[lin].points[-1] - lanes[lin].points[-2]
                d2 = lanes[lo].points[1] - lanes[lo].points[0]
                c = _tangent_intersection(p0, d0, p2, d2)
                conn = Lane(bezier(p0, c, p2, 10), -1, n, successors=[lo])
                lanes[lin].successors.append(len(lanes))
                lanes.append(conn)
    return Network(nodes=nodes, roads=roads, lanes=lanes, node_roads=node_roads, trims=trims)


def _tangent_intersection(p0: np.ndarray, d0: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Where the lines p0 + t d0 and p2 - u d2 meet: the Bezier control point of a turn.

    Near-straight connections get the midpoint, and the point is kept within |p2 - p0| of p0, so a
    connector never bulges out of its junction.
    """
    d0 = d0 / np.linalg.norm(d0)
    d2 = d2 / np.linalg.norm(d2)
    span = float(np.linalg.norm(p2 - p0))
    if abs(d0[0] * d2[1] - d0[1] * d2[0]) < 0.35:
        return (p0 + p2) / 2
    m = np.array([[d0[0], d2[0]], [d0[1], d2[1]]])
    t, _ = np.linalg.solve(m, p2 - p0)
    if t <= 0:
        return (p0 + p2) / 2
    return p0 + min(t, span) * d0
