"""The procedural road network of a town: junctions, roads, lanes and the connectors between them.

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
from typing import TYPE_CHECKING

import numpy as np

from .polylines import bezier, offset, polyline_lengths, trim

if TYPE_CHECKING:
    from .towns import TownSpec

LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 3.0
STOP_BACK = 4.0  # stop line this far before the end of an incoming lane

Edge = tuple[int, int, str]  # junction a, junction b, shape ("straight", "curve", "arc")
LaneEnd = tuple[int, int, int]  # lane index, road index, lane number within its direction


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


# ---------------------------------------------------------------------------------------------
# Junction graph


def _layout_graph(spec: TownSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[Edge]]:
    """Junction positions and edges (a, b, shape) for the spec's layout family."""
    if spec.layout == "ring":
        return _ring_graph(spec)
    grid, edges = _grid_graph(spec, rng)
    if spec.drop_edges > 0:
        edges = _drop_edges(edges, len(grid), spec.drop_edges, rng)
    return grid - grid.mean(axis=0), edges


def _ring_graph(spec: TownSpec) -> tuple[np.ndarray, list[Edge]]:
    """A centre, an inner ring of 4 junctions and an outer ring of 8, joined by spokes and arcs."""
    r1, r2 = spec.block * 0.9, spec.block * 2.2
    pts = [(0.0, 0.0)]
    pts += [(r1 * math.cos(a), r1 * math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    pts += [(r2 * math.cos(a), r2 * math.sin(a)) for a in np.arange(8) * math.pi / 4 + math.pi / 4]
    edges: list[Edge] = []
    for i in range(4):
        edges.append((0, 1 + i, "straight"))
        edges.append((1 + i, 1 + (i + 1) % 4, "arc"))
        edges.append((1 + i, 5 + 2 * i, "straight"))
    for i in range(8):
        edges.append((5 + i, 5 + (i + 1) % 8, "arc"))
    return np.array(pts), edges


def _grid_graph(spec: TownSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[Edge]]:
    """An nx by ny grid of jittered junctions (uncentred) with every neighbour pair joined."""
    nx, ny = spec.nx, spec.ny
    xs = np.cumsum(np.r_[0.0, rng.uniform(0.8, 1.25, nx - 1) * spec.block])
    ys = np.cumsum(np.r_[0.0, rng.uniform(0.8, 1.25, ny - 1) * spec.block])
    if spec.layout == "ladder":  # a long avenue pair with rungs: long narrow blocks
        ys = np.cumsum(np.r_[0.0, np.full(ny - 1, spec.block * 1.6)])
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    grid = grid + rng.uniform(-spec.jitter, spec.jitter, grid.shape)
    shape = "curve" if spec.curve > 0 else "straight"
    edges: list[Edge] = []
    for i in range(nx):
        for j in range(ny):
            if i + 1 < nx:
                edges.append((i * ny + j, (i + 1) * ny + j, shape))
            if j + 1 < ny:
                edges.append((i * ny + j, i * ny + j + 1, shape))
    return grid, edges


def _drop_edges(edges: list[Edge], n_nodes: int, share: float, rng: np.random.Generator) -> list[Edge]:
    """Remove `share` of the edges (in random order), keeping every junction at degree >= 2 and the
    graph connected; what is removed turns crossings into T junctions."""
    candidates = [edges[m] for m in rng.permutation(len(edges))]
    n_drop = int(share * len(edges))
    for edge in candidates:
        if n_drop == 0:
            break
        trial = [e for e in edges if e != edge]
        deg = np.bincount(np.array([(a, b) for a, b, _ in trial]).ravel(), minlength=n_nodes)
        if deg[edge[0]] >= 2 and deg[edge[1]] >= 2 and _connected(n_nodes, trial):
            edges = trial
            n_drop -= 1
    return edges


def _connected(n: int, edges: list[Edge]) -> bool:
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


# ---------------------------------------------------------------------------------------------
# Roads and lanes


def _junction_trims(node_edges: list[list[int]], lanes_per: list[int]) -> np.ndarray:
    """How far from each junction centre its roads end: the widest road's half width plus a margin."""
    trims = np.zeros(len(node_edges))
    for n, ks in enumerate(node_edges):
        hw = max(lanes_per[k] for k in ks) * LANE_WIDTH
        trims[n] = hw + (6.0 if len(ks) >= 3 else 8.0)
    return trims


def _leave_angle(road: Road, node: int, nodes: np.ndarray) -> float:
    """The heading at which `road` leaves junction `node`."""
    pts = road.points if road.a == node else road.points[::-1]
    d = pts[0] - nodes[node]
    d = d / max(np.linalg.norm(d), 1e-9)
    return math.atan2(d[1], d[0])


def _phase_order(roads: list[Road], nodes: np.ndarray, node: int, ks: list[int]) -> list[int]:
    """The roads `ks` at a junction ordered by the angle they leave it at: the traffic-light phase order."""
    return sorted(ks, key=lambda k: _leave_angle(roads[k], node, nodes))


def _road_lanes(
    roads: list[Road], node_roads: list[list[int]]
) -> tuple[list[Lane], list[list[LaneEnd]], list[list[LaneEnd]]]:
    """Both directions' lanes of every road, and per junction the lanes that end (incoming) and start
    (outgoing) there."""
    lanes: list[Lane] = []
    incoming: list[list[LaneEnd]] = [[] for _ in node_roads]
    outgoing: list[list[LaneEnd]] = [[] for _ in node_roads]
    for k, road in enumerate(roads):
        for direction, (start, end) in enumerate(((road.a, road.b), (road.b, road.a))):
            centre = road.points if direction == 0 else road.points[::-1]
            for i in range(road.lanes):
                pts = offset(centre, (i + 0.5) * LANE_WIDTH)
                incoming[end].append((len(lanes), k, i))
                outgoing[start].append((len(lanes), k, i))
                lanes.append(Lane(pts, k, end, approach=node_roads[end].index(k)))
    return lanes, incoming, outgoing


def _turn_kind(d_in: np.ndarray, d_out: np.ndarray) -> str:
    """ "straight", "left" or "right": the turn from heading `d_in` to heading `d_out`."""
    a, b = d_in / np.linalg.norm(d_in), d_out / np.linalg.norm(d_out)
    turn = float(a[0] * b[1] - a[1] * b[0])  # > 0: a right turn (yaw grows)
    return "straight" if abs(turn) < 0.5 and d_in @ d_out > 0 else ("right" if turn > 0 else "left")


def _turn_targets(lanes: list[Lane], roads: list[Road], into: LaneEnd, outgoing: list[LaneEnd]) -> list[int]:
    """The outgoing lanes an incoming lane connects to across its junction.

    With two lanes in, the left lane (0) goes straight or left and the right lane straight or right,
    so paths from one approach never cross. Turns end in the nearest lane. A dead end allows a U-turn.
    """
    lin, kin, iin = into
    outs = [(lo, ko, io) for lo, ko, io in outgoing if ko != kin] or list(outgoing)
    n_in = roads[kin].lanes
    n_out = {ko: max(io for _, k2, io in outs if k2 == ko) + 1 for _, ko, _ in outs}
    d_in = lanes[lin].points[-1] - lanes[lin].points[-2]
    targets = []
    for lo, ko, io in outs:
        kind = _turn_kind(d_in, lanes[lo].points[1] - lanes[lo].points[0])
        if n_in == 2 and ((iin == 0 and kind == "right") or (iin == 1 and kind == "left")):
            continue
        want = {"straight": min(iin, n_out[ko] - 1), "left": 0, "right": n_out[ko] - 1}[kind]
        if io == want:
            targets.append(lo)
    return targets or [lo for lo, _, io in outs if io == 0]


def _connector(inc: Lane, out: Lane, out_index: int, junction: int) -> Lane:
    """The Bezier lane across `junction` from the end of lane `inc` to the start of lane `out`."""
    p0, p2 = inc.points[-1], out.points[0]
    d0 = inc.points[-1] - inc.points[-2]
    d2 = out.points[1] - out.points[0]
    c = _tangent_intersection(p0, d0, p2, d2)
    return Lane(bezier(p0, c, p2, 10), -1, junction, successors=[out_index])


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
    trims = _junction_trims(node_edges, lanes_per)
    roads = [
        Road(a, b, trim(full, trims[a], trims[b]), lanes_per[k], full)
        for k, ((a, b, _), full) in enumerate(zip(edges, fulls, strict=False))
    ]
    node_roads = [_phase_order(roads, nodes, n, ks) for n, ks in enumerate(node_edges)]
    lanes, incoming, outgoing = _road_lanes(roads, node_roads)
    for n in range(len(nodes)):
        for into in incoming[n]:
            for lo in _turn_targets(lanes, roads, into, outgoing[n]):
                lanes[into[0]].successors.append(len(lanes))
                lanes.append(_connector(lanes[into[0]], lanes[lo], lo, n))
    return Network(nodes=nodes, roads=roads, lanes=lanes, node_roads=node_roads, trims=trims)
