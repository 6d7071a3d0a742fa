"""Static scenery: buildings, walls, fences, hedges, trees, poles, street lights, signs, traffic-light
heads, guard rails, rails and props, placed along the roads and in the blocks.

Every solid object is also recorded as a 2-D oriented box (`Obstacles`) with its class, which the
collision check uses, so a crash reports what the camera saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.conventions import CLASS_IDS

from .geometry import MeshBuilder
from .ground import COARSE, RAIL_CORRIDOR, RES, GroundMap, coarse_blocked
from .network import SIDEWALK_WIDTH, STOP_BACK, Network
from .polylines import normals, polyline_lengths, resample
from .towns import TownSpec

C = CLASS_IDS
PALETTES = [  # building colour families per town, RGB
    [(200, 170, 140), (230, 220, 200), (170, 120, 100), (210, 200, 170)],
    [(150, 150, 160), (190, 185, 175), (120, 125, 140), (210, 210, 215)],
    [(110, 115, 125), (160, 165, 170), (90, 100, 120), (200, 195, 185)],
    [(240, 235, 220), (200, 160, 120), (160, 90, 70), (225, 210, 180)],
    [(140, 140, 130), (170, 160, 120), (120, 110, 100), (180, 180, 175)],
    [(230, 215, 190), (190, 200, 210), (170, 140, 120), (220, 190, 160)],
    [(210, 150, 110), (190, 180, 160), (150, 100, 80), (230, 200, 150)],
    [(120, 90, 80), (150, 150, 150), (100, 110, 110), (180, 160, 130)],
]


@dataclass
class Obstacles:
    """2-D oriented boxes of static objects: (N, 5) [cx, cy, half_len, half_wid, yaw] and (N,) class."""

    boxes: np.ndarray
    classes: np.ndarray
    cell: float = 16.0

    def __post_init__(self) -> None:
        # A spatial hash: cell -> obstacle indices whose bounding circle touches it.
        self._grid: dict[tuple[int, int], list[int]] = {}
        r = np.hypot(self.boxes[:, 2], self.boxes[:, 3]) if len(self.boxes) else np.zeros(0)
        for i, (b, ri) in enumerate(zip(self.boxes, r, strict=False)):
            for gx in range(int(math.floor((b[0] - ri) / self.cell)), int(math.floor((b[0] + ri) / self.cell)) + 1):
                for gy in range(int(math.floor((b[1] - ri) / self.cell)), int(math.floor((b[1] + ri) / self.cell)) + 1):
                    self._grid.setdefault((gx, gy), []).append(i)

    def near(self, x: float, y: float, radius: float) -> np.ndarray:
        """Indices of obstacles that may lie within `radius` of (x, y)."""
        out: set[int] = set()
        for gx in range(int(math.floor((x - radius) / self.cell)), int(math.floor((x + radius) / self.cell)) + 1):
            for gy in range(int(math.floor((y - radius) / self.cell)), int(math.floor((y + radius) / self.cell)) + 1):
                out.update(self._grid.get((gx, gy), ()))
        return np.fromiter(sorted(out), dtype=np.int64)


@dataclass
class LightHead:
    """Where a traffic light's lamp is drawn, and which junction approach it controls."""

    position: np.ndarray  # (3,) world
    yaw: float  # the lamp faces this direction (towards the oncoming traffic)
    junction: int
    approach: int


@dataclass
class Scenery:
    mesh: MeshBuilder
    obstacles: Obstacles
    lights: list[LightHead]


class _Placer:
    def __init__(self, ground: GroundMap, rng: np.random.Generator) -> None:
        self.g = ground
        self.occ = coarse_blocked(ground)
        self.rng = rng
        self.mesh = MeshBuilder()
        self.obs: list[tuple] = []
        self.obs_cls: list[int] = []

    def free(self, centre: np.ndarray, length: float, width: float, yaw: float) -> bool:
        """Whether an oriented footprint lies on open ground (tested at 15 points)."""
        c, s = math.cos(yaw), math.sin(yaw)
        u = np.array([-0.5, 0.0, 0.5])
        gx, gy = np.meshgrid(u * length, u * width)
        gx = np.concatenate([gx.ravel(), [0.25 * length, -0.25 * length]])
        gy = np.concatenate([gy.ravel(), [0.0, 0.0]])
        pts = np.stack([centre[0] + gx * c - gy * s, centre[1] + gx * s + gy * c], axis=-1)
        cell = ((pts - self.g.origin) / (RES * COARSE)).astype(np.int64)
        h, w = self.occ.shape
        if (cell < 0).any() or (cell[:, 0] >= w).any() or (cell[:, 1] >= h).any():
            return False
        return not self.occ[cell[:, 1], cell[:, 0]].any()

    def claim(self, centre: np.ndarray, length: float, width: float, yaw: float) -> None:
        c, s = math.cos(yaw), math.sin(yaw)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [length / 2, width / 2]
        pts = centre + corners @ np.array([[c, s], [-s, c]])
        cv2.fillPoly(self.occ, [np.round((pts - self.g.origin) / (RES * COARSE) * 8).astype(np.int32)], 1, shift=3)

    def touches_road(self, centre, length: float, width: float, yaw: float) -> bool:
        """Whether a footprint (plus 0.3 m) reaches the road surface (where vehicles drive)."""
        c, s = math.cos(yaw), math.sin(yaw)
        u = np.array([-0.5, 0.0, 0.5])
        gx, gy = np.meshgrid(u * (length + 0.6), u * (width + 0.6))
        pts = np.stack(
            [centre[0] + gx.ravel() * c - gy.ravel() * s, centre[1] + gx.ravel() * s + gy.ravel() * c], axis=-1
        )
        return bool(np.isin(self.g.class_at(pts), (C["Road"], C["RoadLine"])).any())

    def solid(self, kind: str, centre, size, yaw: float, rgb, cls: int) -> bool:
        """Add a solid (colliding) object unless it would stand on the road; returns whether it was added."""
        if self.touches_road(centre, size[0], size[1], yaw):
            return False
        self.mesh.add(kind, centre, size, yaw, rgb, cls)
        self.obs.append((centre[0], centre[1], size[0] / 2, size[1] / 2, yaw))
        self.obs_cls.append(cls)
        return True

    def jitter(self, rgb, amount: int = 18) -> tuple:
        return tuple(int(np.clip(v + self.rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)

    # --- objects -------------------------------------------------------------------------------
    def tree(self, p: np.ndarray, scale: float = 1.0) -> None:
        h = float(self.rng.uniform(4.0, 8.0)) * scale
        if not self.solid(
            "trunk", (p[0], p[1], 0.0), (0.35, 0.35, h * 0.45), 0.0, self.jitter((90, 65, 45)), C["Vegetation"]
        ):
            return
        green = self.jitter((60, 110, 45), 25)
        if self.rng.random() < 0.4:
            self.mesh.add("cone", (p[0], p[1], h * 0.25), (h * 0.45, h * 0.45, h * 0.85), 0.0, green, C["Vegetation"])
        else:
            d = h * float(self.rng.uniform(0.45, 0.7))
            self.mesh.add(
                "crown", (p[0], p[1], h * 0.4), (d, d, h * 0.65), float(self.rng.uniform(0, 6)), green, C["Vegetation"]
            )

    def street_light(self, p: np.ndarray, yaw_to_road: float) -> None:
        if not self.solid("prism", (p[0], p[1], 0.0), (0.22, 0.22, 7.5), 0.0, (95, 98, 100), C["Pole"]):
            return
        d = np.array([math.cos(yaw_to_road), math.sin(yaw_to_road)])
        arm = p + d * 1.0
        self.mesh.add("box", (arm[0], arm[1], 7.3), (2.0, 0.12, 0.12), yaw_to_road, (95, 98, 100), C["Pole"])
        lamp = p + d * 1.9
        self.mesh.add("box", (lamp[0], lamp[1], 7.15), (0.6, 0.3, 0.18), yaw_to_road, (230, 230, 200), C["Pole"])

    def sign(self, p: np.ndarray, facing: float, kind: int) -> None:
        if not self.solid("prism", (p[0], p[1], 0.0), (0.1, 0.1, 2.4), 0.0, (150, 150, 150), C["Pole"]):
            return
        colour = [(200, 30, 30), (240, 240, 240), (30, 80, 200), (240, 200, 20)][kind % 4]
        self.mesh.add("box", (p[0], p[1], 1.9), (0.05, 0.7, 0.7), facing, colour, C["TrafficSign"])


@dataclass(frozen=True)
class _Kerbside:
    """One side of a road (`side` -1 left, +1 right of its a -> b centre line), for placing objects along it."""

    points: np.ndarray
    cum: np.ndarray  # arc length at each point
    normals: np.ndarray
    side: float

    @property
    def length(self) -> float:
        return self.cum[-1]

    def at(self, s: float, off: float) -> tuple[np.ndarray, float]:
        """The point `off` metres out from the centre line at arc length `s`, and the road's heading there."""
        cum, pts, nrm = self.cum, self.points, self.normals
        i = int(np.clip(np.searchsorted(cum, s), 1, len(cum) - 1))
        t = (s - cum[i - 1]) / max(cum[i] - cum[i - 1], 1e-9)
        base = pts[i - 1] + (pts[i] - pts[i - 1]) * t
        n = nrm[i - 1] + (nrm[i] - nrm[i - 1]) * t
        n /= np.linalg.norm(n)
        d = pts[i] - pts[i - 1]
        return base + n * self.side * off, math.atan2(d[1], d[0])


def build_scenery(spec: TownSpec, net: Network, ground: GroundMap, rng: np.random.Generator) -> Scenery:
    """Place every static object of a town.

    The builders run in a fixed order and draw from `rng` in that order, so a town's scenery is
    the same on every build; each one claims the ground it uses, so later ones fill what is left.
    """
    P = _Placer(ground, rng)
    if ground.rail_y is not None:  # keep the rail corridor open (no frontage or yards hiding the line)
        x0, _, x1, _ = ground.extent
        P.claim(np.array([(x0 + x1) / 2, ground.rail_y]), x1 - x0, 2 * RAIL_CORRIDOR, 0.0)
    palette = PALETTES[spec.palette % len(PALETTES)]
    lights = _junction_furniture(P, net)
    _footbridges(P, net)
    for road in net.roads:
        cum, nrm = polyline_lengths(road.points), normals(road.points)
        for side in (-1.0, 1.0):
            _roadside(P, spec, _Kerbside(road.points, cum, nrm, side), road.half_width, palette)
    _block_interiors(P, spec, ground, palette)
    _rail_track(P, ground)
    _quay_wall(P, ground)
    _kerbs(P, ground)
    boxes = np.array(P.obs, dtype=np.float64).reshape(-1, 5)
    return Scenery(mesh=P.mesh, obstacles=Obstacles(boxes, np.array(P.obs_cls, dtype=np.uint8)), lights=lights)


# --- at junctions ------------------------------------------------------------------------------
def _junction_furniture(P: _Placer, net: Network) -> list[LightHead]:
    """Traffic lights (at signalised junctions) or, by chance, a sign at every approach, on the right
    of the incoming lanes by the stop line; returns the lamp heads."""
    lights: list[LightHead] = []
    signalised = net.signalised
    for k, road in enumerate(net.roads):
        hw = road.half_width
        for node, pts in ((road.b, road.points), (road.a, road.points[::-1])):
            cum = polyline_lengths(pts)
            stop = resample(pts, np.array([cum[-1] - STOP_BACK]))[0]
            d = pts[-1] - pts[-2]
            d /= np.linalg.norm(d)
            yaw = math.atan2(d[1], d[0])
            lamps = _traffic_light(P, stop, d, hw) if signalised[node] else []
            if lamps:
                approach = net.node_roads[node].index(k)
                lights += [LightHead(lamp, yaw + math.pi, node, approach) for lamp in lamps]
            elif P.rng.random() < 0.5:
                right = np.array([-d[1], d[0]])
                P.sign(stop + right * (hw + 1.0) - d * 4.0, yaw, int(P.rng.integers(0, 4)))  # plate faces the traffic
    return lights


def _traffic_light(P: _Placer, stop: np.ndarray, d: np.ndarray, hw: float) -> list[np.ndarray]:
    """A pole right of the stop line with a head on an arm over the lanes and a low head on the pole,
    for traffic heading `d`; returns the two lamp positions (none when the pole would stand on the road)."""
    right = np.array([-d[1], d[0]])
    yaw = math.atan2(d[1], d[0])
    pole = stop + right * (hw + 0.8)
    if not P.solid("prism", (pole[0], pole[1], 0.0), (0.25, 0.25, 5.6), 0.0, (70, 72, 75), C["Pole"]):
        return []
    arm_len = hw * 0.75
    arm = pole - right * (arm_len / 2)
    P.mesh.add("box", (arm[0], arm[1], 5.3), (0.15, arm_len, 0.15), yaw, (70, 72, 75), C["Pole"])
    head = pole - right * (arm_len - 0.2)
    P.mesh.add("box", (head[0], head[1], 4.3), (0.35, 0.4, 1.1), yaw, (35, 38, 35), C["TrafficLight"])
    lamp = head - d * 0.2
    low = pole - d * 0.2  # the second, low head on the pole
    P.mesh.add("box", (pole[0], pole[1], 2.3), (0.3, 0.35, 0.9), yaw, (35, 38, 35), C["TrafficLight"])
    return [np.array([lamp[0], lamp[1], 4.55]), np.array([low[0], low[1], 2.5])]


def _footbridges(P: _Placer, net: Network) -> None:
    """A footbridge (Bridge class) over a few of the longer roads, before anything else claims the ground."""
    long_roads = [k for k, r in enumerate(net.roads) if polyline_lengths(r.points)[-1] > 50.0]
    for k in P.rng.permutation(long_roads)[: max(1, len(long_roads) // 8)]:
        road = net.roads[int(k)]
        cum = polyline_lengths(road.points)
        mid = resample(road.points, np.array([cum[-1] * 0.5, cum[-1] * 0.5 + 1.0]))
        d = (mid[1] - mid[0]) / np.linalg.norm(mid[1] - mid[0])
        right = np.array([-d[1], d[0]])
        yaw = math.atan2(d[1], d[0])
        span = 2 * (road.half_width + SIDEWALK_WIDTH) + 2.0
        grey = P.jitter((150, 140, 130))
        P.mesh.add("box", (mid[0][0], mid[0][1], 5.2), (3.0, span, 0.7), yaw, grey, C["Bridge"])  # deck
        for side in (-1.0, 1.0):
            parapet = mid[0] + d * side * 1.45
            P.mesh.add("box", (parapet[0], parapet[1], 5.9), (0.1, span, 1.0), yaw, grey, C["Bridge"])
            pier = mid[0] + right * side * (road.half_width + SIDEWALK_WIDTH + 0.5)
            P.solid("box", (pier[0], pier[1], 0.0), (3.0, 1.0, 5.2), yaw, grey, C["Bridge"])
            P.claim(pier, 3.0, 1.6, yaw)


# --- along the roads ---------------------------------------------------------------------------
def _roadside(P: _Placer, spec: TownSpec, kerb: _Kerbside, hw: float, palette: list[tuple]) -> None:
    """One side of a road: signs and street lights at the kerb, trees and props on the sidewalk, then frontage."""
    _roadside_signs(P, kerb, hw)
    _street_lights(P, kerb, hw)
    _sidewalk_props(P, kerb, hw)
    _frontage(P, spec, kerb, hw, palette)


def _roadside_signs(P: _Placer, kerb: _Kerbside, hw: float) -> None:
    """Speed-limit and other signs every 70 m."""
    for s in np.arange(20.0 + P.rng.uniform(0, 30), kerb.length - 20.0, 70.0):
        p, yaw = kerb.at(s, hw + 0.9)
        P.sign(p, yaw, int(P.rng.integers(0, 4)))


def _street_lights(P: _Placer, kerb: _Kerbside, hw: float) -> None:
    """Street lights every 28 m, their arms over the road."""
    phase = P.rng.uniform(0, 25)
    for s in np.arange(6.0 + phase, kerb.length - 6.0, 28.0):
        p, yaw = kerb.at(s, hw + 0.6)
        P.street_light(p, yaw - kerb.side * math.pi / 2)


def _sidewalk_props(P: _Placer, kerb: _Kerbside, hw: float) -> None:
    """Trees and street furniture every 11 to 18 m along the sidewalk."""
    for s in np.arange(10.0 + P.rng.uniform(0, 10), kerb.length - 8.0, float(P.rng.uniform(11, 18))):
        _sidewalk_object(P, kerb, s, hw, P.rng.random())


def _sidewalk_object(P: _Placer, kerb: _Kerbside, s: float, hw: float, r: float) -> None:
    """What stands at arc length `s`, by the draw `r`: a tree, bench, bin, hydrant, utility box, bus shelter or nothing."""
    if r < 0.5:
        P.tree(kerb.at(s, hw + SIDEWALK_WIDTH - 0.8)[0], 0.9)
    elif r < 0.62:
        p, yaw = kerb.at(s, hw + SIDEWALK_WIDTH - 0.6)
        P.solid("box", (p[0], p[1], 0.0), (1.8, 0.6, 0.5), yaw, (120, 90, 60), C["Static"])  # bench
    elif r < 0.74:
        p, yaw = kerb.at(s, hw + 0.7)
        P.solid("prism", (p[0], p[1], 0.0), (0.6, 0.6, 1.0), 0.0, P.jitter((40, 90, 50)), C["Dynamic"])  # bin
    elif r < 0.80:
        p, yaw = kerb.at(s, hw + 0.5)
        P.solid("prism", (p[0], p[1], 0.0), (0.3, 0.3, 0.8), 0.0, (200, 30, 30), C["Static"])  # hydrant
    elif r < 0.86:
        p, yaw = kerb.at(s, hw + SIDEWALK_WIDTH - 0.5)
        P.solid("box", (p[0], p[1], 0.0), (0.6, 0.5, 1.3), yaw, (90, 95, 80), C["Other"])  # utility box
    elif r < 0.9:
        p, yaw = kerb.at(s, hw + SIDEWALK_WIDTH - 0.7)
        P.solid("box", (p[0], p[1], 0.0), (3.5, 1.2, 2.5), yaw, (170, 180, 185), C["Static"])  # bus shelter


def _frontage(P: _Placer, spec: TownSpec, kerb: _Kerbside, hw: float, palette: list[tuple]) -> None:
    """Lots of 8 to 22 m behind the sidewalk: a building where one is drawn and fits, else a lot boundary."""
    rng = P.rng
    setback = float(rng.uniform(1.0, 5.0)) if spec.interior != "buildings" else 0.5
    base = hw + SIDEWALK_WIDTH + 0.4
    s = 4.0
    while s < kerb.length - 4.0:
        wdt = float(rng.uniform(8.0, 22.0))
        if s + wdt > kerb.length - 2.0:
            break
        dep = float(rng.uniform(8.0, 18.0))
        mid, yaw = kerb.at(s + wdt / 2, base + setback + dep / 2)
        if rng.random() < spec.building_density and P.free(mid, wdt, dep, yaw):
            _frontage_building(P, spec, mid, wdt, dep, yaw, palette)
        else:
            _lot_boundary(P, spec, kerb, s + wdt / 2, base, wdt)
        s += wdt + float(rng.uniform(0.5, 4.0))


def _frontage_building(
    P: _Placer, spec: TownSpec, mid: np.ndarray, wdt: float, dep: float, yaw: float, palette: list[tuple]
) -> None:
    """A building on a frontage lot; in downtown towns, by chance, with a stepped tower on top."""
    h = float(P.rng.uniform(*spec.building_height))
    colour = P.jitter(palette[int(P.rng.integers(0, len(palette)))])
    P.solid("box", (mid[0], mid[1], 0.0), (wdt, dep, h), yaw, colour, C["Building"])
    P.claim(mid, wdt + 1.0, dep + 1.0, yaw)
    if spec.interior == "buildings" and P.rng.random() < 0.5:  # stepped tower
        P.mesh.add("box", (mid[0], mid[1], h), (wdt * 0.6, dep * 0.6, h * 0.4), yaw, colour, C["Building"])


def _lot_boundary(P: _Placer, spec: TownSpec, kerb: _Kerbside, s: float, base: float, wdt: float) -> None:
    """A guard rail at the kerb, or the town's fence, wall or hedge along an empty lot centred at `s`."""
    edge, yaw = kerb.at(s, base + 0.3)
    kind = spec.boundary if spec.boundary != "mixed" else ["fence", "wall", "hedge"][int(P.rng.integers(0, 3))]
    if spec.guard_rails and P.rng.random() < 0.35:
        edge, yaw = kerb.at(s, base - 0.2)
        size, cls, col = (wdt, 0.25, 0.8), C["GuardRail"], (175, 178, 180)
    elif kind == "fence":
        size, cls, col = (wdt, 0.08, 1.6), C["Fence"], P.jitter((120, 100, 80))
    elif kind == "wall":
        size, cls, col = (wdt, 0.35, 2.2), C["Wall"], P.jitter((165, 160, 150))
    else:
        size, cls, col = (wdt, 1.0, 1.3), C["Vegetation"], P.jitter((50, 100, 40))
    if (cls == C["GuardRail"] or P.free(edge, wdt, max(size[1], 0.3), yaw)) and P.rng.random() < 0.8:
        P.solid("box", (edge[0], edge[1], 0.0), size, yaw, col, cls)
        P.claim(edge, wdt, size[1] + 0.4, yaw)


# --- block interiors ---------------------------------------------------------------------------
def _block_interiors(P: _Placer, spec: TownSpec, ground: GroundMap, palette: list[tuple]) -> None:
    """Random points over the town (one try per 120 m^2) filled, where free, by the town's interior style."""
    lo, hi = np.array(ground.extent[:2]) + 10.0, np.array(ground.extent[2:]) - 10.0
    n_try = int((hi - lo).prod() / 120.0)
    for _ in range(n_try):
        p = P.rng.uniform(lo, hi)
        mode = spec.interior if spec.interior != "mixed" else ["trees", "buildings", "yards"][int(P.rng.integers(0, 3))]
        if mode == "trees":
            _interior_tree(P, p)
        elif mode == "buildings":
            _interior_building(P, spec, p, palette)
        else:
            _yard_object(P, p)


def _interior_tree(P: _Placer, p: np.ndarray) -> None:
    """A tree of random scale."""
    if P.free(p, 3.0, 3.0, 0.0):
        P.tree(p, float(P.rng.uniform(0.9, 1.5)))
        P.claim(p, 2.5, 2.5, 0.0)


def _interior_building(P: _Placer, spec: TownSpec, p: np.ndarray, palette: list[tuple]) -> None:
    """A building of random footprint and orientation."""
    rng = P.rng
    wdt, dep, yaw = float(rng.uniform(10, 25)), float(rng.uniform(10, 25)), float(rng.uniform(0, math.pi))
    if P.free(p, wdt + 2, dep + 2, yaw):
        h = float(rng.uniform(*spec.building_height))
        P.solid("box", (p[0], p[1], 0.0), (wdt, dep, h), yaw, P.jitter(palette[int(rng.integers(0, 4))]), C["Building"])
        P.claim(p, wdt + 2, dep + 2, yaw)


def _yard_object(P: _Placer, p: np.ndarray) -> None:
    """Yards: a shed or container (static), a tree or a bush."""
    r = P.rng.random()
    yaw = float(P.rng.uniform(0, math.pi))
    if r < 0.3 and P.free(p, 7, 4, yaw):
        colour = [(170, 60, 40), (40, 90, 150), (200, 170, 40)][int(P.rng.integers(0, 3))]
        P.solid("box", (p[0], p[1], 0.0), (6.0, 2.5, 2.6), yaw, P.jitter(colour), C["Static"])
        P.claim(p, 7, 4, yaw)
    elif r < 0.6 and P.free(p, 3, 3, 0.0):
        P.tree(p)
        P.claim(p, 2.5, 2.5, 0.0)
    elif P.free(p, 3, 3, 0.0):
        P.solid("crown", (p[0], p[1], 0.0), (2.2, 2.2, 1.4), yaw, P.jitter((55, 105, 40)), C["Vegetation"])
        P.claim(p, 2.5, 2.5, 0.0)


# --- rail and water ----------------------------------------------------------------------------
def _rail_track(P: _Placer, ground: GroundMap) -> None:
    """Two rails and sleepers over the ballast, stopping at the level crossings."""
    if ground.rail_y is None:
        return
    row = ground.cls[int((ground.rail_y - ground.origin[1]) / RES)] == C["RailTrack"]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=False):  # runs of ballast between the roads
        xa, xb = ground.origin[0] + a * RES + 0.2, ground.origin[0] + b * RES - 0.2
        for off in (-0.72, 0.72):
            P.mesh.add(
                "box",
                ((xa + xb) / 2, ground.rail_y + off, 0.0),
                (xb - xa, 0.1, 0.18),
                0.0,
                (120, 115, 110),
                C["RailTrack"],
            )
        for x in np.arange(xa + 0.3, xb - 0.2, 2.0):
            P.mesh.add("box", (x, ground.rail_y, 0.0), (0.25, 2.4, 0.08), 0.0, (95, 80, 65), C["RailTrack"])


def _quay_wall(P: _Placer, ground: GroundMap) -> None:
    """A low quay wall along open water."""
    if ground.water_edge is None:
        return
    x0, _, x1, _ = ground.extent
    y = ground.water_edge[1]
    P.solid("box", ((x0 + x1) / 2, y - 0.3, 0.0), (x1 - x0, 0.6, 0.5), 0.0, (150, 145, 135), C["Wall"])


def _kerbs(P: _Placer, ground: GroundMap, step: int = 2) -> None:
    """Kerb stones (0.15 m high, labelled Sidewalk) along the edge of the road surface, on the sidewalk side."""
    road = np.isin(ground.cls[::step, ::step], (C["Road"], C["RoadLine"])).astype(np.uint8)
    closed = cv2.morphologyEx(road, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))  # markings and gaps inside
    contours, _ = cv2.findContours(closed, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    res = RES * step
    segs = []
    for cnt in contours:
        if len(cnt) < 8:
            continue
        poly = cv2.approxPolyDP(cnt, 1.0, True)[:, 0, :].astype(np.float64)
        pts = ground.origin + (poly + 0.5) * res
        segs.append(np.stack([pts, np.roll(pts, -1, axis=0)], axis=1))
    if not segs:
        return
    seg = np.concatenate(segs)
    a, b = seg[:, 0], seg[:, 1]
    d = b - a
    length = np.linalg.norm(d, axis=1)
    keep = length > 0.3
    a, d, length = a[keep], d[keep], length[keep]
    u = d / length[:, None]
    n = np.stack([-u[:, 1], u[:, 0]], axis=-1)
    mid = a + d / 2
    # the kerb goes on the side that is not road
    out = np.where(np.isin(ground.class_at(mid + n * 0.6), (C["Road"], C["RoadLine"]))[:, None], -n, n)
    centre = mid + out * 0.2
    yaw = np.arctan2(u[:, 1], u[:, 0])
    for c, ln, y in zip(centre, length, yaw, strict=False):
        P.mesh.add("kerb", (c[0], c[1], 0.0), (ln + 0.1, 0.25, 0.15), float(y), (175, 172, 165), C["Sidewalk"])
