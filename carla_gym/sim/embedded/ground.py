"""The ground map: a top-down raster of what covers the ground (road, markings, sidewalk, grass, water).

One raster serves twice: the renderer samples it as a texture on a single ground quad (so roads,
lane markings, crosswalks and sidewalks cost no geometry), and the simulation looks up the same
cells for off-road and lane-invasion events, so what the camera sees and what the events report
always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.conventions import CLASS_IDS

from .network import LANE_WIDTH, SIDEWALK_WIDTH, STOP_BACK, Network, Road
from .polylines import offset, polyline_lengths, resample
from .towns import TownSpec

RES = 0.1  # metres per ground cell
MARGIN = 75.0  # ground around the road network, metres
COARSE = 5  # coarse occupancy cells are COARSE x COARSE ground cells
RAIL_CORRIDOR = 6.0  # half width of the open corridor kept along the rail line, metres

ROAD, LINE, SIDEWALK, GROUND = CLASS_IDS["Road"], CLASS_IDS["RoadLine"], CLASS_IDS["Sidewalk"], CLASS_IDS["Ground"]
WATER, RAIL = CLASS_IDS["Water"], CLASS_IDS["RailTrack"]
DASHED, SOLID = 1, 2  # marking kinds in `GroundMap.marks`
WHITE, YELLOW = 0, 1  # marking colours in `GroundMap.variant`


@dataclass
class GroundMap:
    """Rasters over the town: `cls` (22-class id), `variant` (colour variant), `marks` (0, DASHED, SOLID)."""

    origin: np.ndarray  # world (x, y) of cell (0, 0)'s corner
    cls: np.ndarray  # (rows=y, cols=x) uint8
    variant: np.ndarray
    marks: np.ndarray
    rail_y: float | None = None
    water_edge: tuple[str, float] | None = None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in metres."""
        h, w = self.cls.shape
        return self.origin[0], self.origin[1], self.origin[0] + w * RES, self.origin[1] + h * RES

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) indices of world points, clipped to the map."""
        xy = np.asarray(xy, dtype=np.float64)
        col = np.clip(((xy[..., 0] - self.origin[0]) / RES).astype(np.int64), 0, self.cls.shape[1] - 1)
        row = np.clip(((xy[..., 1] - self.origin[1]) / RES).astype(np.int64), 0, self.cls.shape[0] - 1)
        return row, col

    def class_at(self, xy: np.ndarray) -> np.ndarray:
        """Ground class id under world points (..., 2)."""
        return self.cls[self.cells(xy)]

    def mark_at(self, xy: np.ndarray) -> np.ndarray:
        """Marking kind under world points (..., 2): 0 none, 1 dashed, 2 solid."""
        return self.marks[self.cells(xy)]

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """World points to fixed-point pixel coordinates for cv2 drawing with shift=3."""
        return np.round((np.asarray(xy) - self.origin) / RES * 8).astype(np.int32)


def _dashes(points: np.ndarray, on: float = 3.0, period: float = 9.0) -> list[np.ndarray]:
    cum = polyline_lengths(points)
    out = []
    for s0 in np.arange(1.0, cum[-1] - 1.0, period):
        s = np.linspace(s0, min(s0 + on, cum[-1]), 4)
        out.append(resample(points, s))
    return out


def build_ground(spec: TownSpec, net: Network, rng: np.random.Generator) -> GroundMap:
    """Rasterise roads, junctions, markings, sidewalks, water and rail ballast.

    The layers go down in a fixed order (water and rail under the road and sidewalk, markings on top)
    and `rng` is drawn in that order too, so a town's ground, and the scenery drawn after it from the
    same generator, stay the same from run to run.
    """
    g = _blank_ground(net)
    road_mask = _road_mask(g, net, rng)
    if spec.water:
        _draw_water(g, spec, net, road_mask, rng)
    if spec.rail:
        _draw_rail(g, net)
    _draw_road_and_sidewalk(g, road_mask)
    signalised = net.signalised
    for road in net.roads:
        _draw_lane_markings(g, road)
        for node, end_pts in ((road.b, road.points), (road.a, road.points[::-1])):
            if signalised[node]:
                _draw_stop_and_crossing(g, end_pts, road.half_width)
    return g


def _blank_ground(net: Network) -> GroundMap:
    """Open ground covering the network plus MARGIN, sized to whole coarse cells."""
    lo = net.nodes.min(axis=0) - MARGIN
    hi = net.nodes.max(axis=0) + MARGIN
    w = int(math.ceil((hi[0] - lo[0]) / RES / COARSE)) * COARSE
    h = int(math.ceil((hi[1] - lo[1]) / RES / COARSE)) * COARSE
    return GroundMap(
        origin=lo.astype(np.float64),
        cls=np.full((h, w), GROUND, np.uint8),
        variant=np.zeros((h, w), np.uint8),
        marks=np.zeros((h, w), np.uint8),
    )


def _fill(g: GroundMap, poly: np.ndarray, target: np.ndarray, value: int) -> None:
    """Fill a world-space polygon with `value` in one of `g`'s rasters (or a same-sized mask)."""
    cv2.fillPoly(target, [g.to_pixels(poly)], int(value), lineType=cv2.LINE_8, shift=3)


def _line(g: GroundMap, points: np.ndarray, cls: int, colour: int, mark: int, width_m: float = 0.15) -> None:
    """Draw a painted line: its class and colour, and its marking kind unless `mark` is 0."""
    t = max(1, int(round(width_m / RES)))
    p = [g.to_pixels(points)]
    cv2.polylines(g.cls, p, False, int(cls), thickness=t, lineType=cv2.LINE_8, shift=3)
    cv2.polylines(g.variant, p, False, int(colour), thickness=t, lineType=cv2.LINE_8, shift=3)
    if mark:
        cv2.polylines(g.marks, p, False, int(mark), thickness=t, lineType=cv2.LINE_8, shift=3)


def _road_mask(g: GroundMap, net: Network, rng: np.random.Generator) -> np.ndarray:
    """Mask (1 on road) of road strips, junction areas and turning paths; each strip gets a random
    asphalt variant in `g.variant`."""
    road_mask = np.zeros(g.cls.shape, np.uint8)
    for road in net.roads:
        hw = road.half_width
        poly = np.concatenate([offset(road.points, -hw), offset(road.points, hw)[::-1]])
        _fill(g, poly, road_mask, 1)
        _fill(g, poly, g.variant, int(rng.integers(0, 4)))
    for n, ks in enumerate(net.node_roads):
        _fill(g, _junction_hull(net, n, ks), road_mask, 1)
    for lane in net.lanes:  # junction connectors: the turning paths always lie on the road
        if lane.road < 0:
            width = int((LANE_WIDTH + 1.5) / RES)
            cv2.polylines(road_mask, [g.to_pixels(lane.points)], False, 1, thickness=width, shift=3)
    return road_mask


def _junction_hull(net: Network, n: int, ks: list[int]) -> np.ndarray:
    """Convex hull of the road-edge corners where roads `ks` meet junction `n`."""
    corners = []
    for k in ks:
        road = net.roads[k]
        end = road.points[0] if road.a == n else road.points[-1]
        nrm = offset(road.points, 1.0) - road.points
        nv = nrm[0] if road.a == n else nrm[-1]
        corners += [end + nv * road.half_width, end - nv * road.half_width]
    return cv2.convexHull(np.array(corners, np.float32))[:, 0, :]


def _draw_water(g: GroundMap, spec: TownSpec, net: Network, road_mask: np.ndarray, rng: np.random.Generator) -> None:
    """Water under everything drawn later: a waterfront just past the outer road (in view, not behind
    its frontage) in ladder and ring towns, else a lake in the largest open space among the roads."""
    if spec.layout in ("ladder", "ring"):
        outer = max(r.half_width for r in net.roads) + SIDEWALK_WIDTH + 0.6
        y_edge = float(net.nodes[:, 1].max() + outer)  # a quay just past the outer road's sidewalk
        g.cls[int((y_edge - g.origin[1]) / RES) :, :] = WATER
        g.water_edge = ("y", y_edge)
    else:
        _draw_lake(g, road_mask, rng)


def _draw_lake(g: GroundMap, road_mask: np.ndarray, rng: np.random.Generator) -> None:
    """An ellipse of water centred on the point farthest from any road (inside the margin)."""
    lo = g.origin
    h, w = g.cls.shape
    coarse = cv2.resize(road_mask, (w // COARSE, h // COARSE), interpolation=cv2.INTER_NEAREST)
    dist = cv2.distanceTransform((1 - coarse).astype(np.uint8), cv2.DIST_L2, 5)
    margin = int(MARGIN / RES / COARSE)
    inner = dist[margin:-margin, margin:-margin]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    radius = float(inner[r, c]) * COARSE * RES
    centre = lo + (np.array([c, r]) + margin + 0.5) * COARSE * RES
    axes = (int(max(radius - 7.0, 6.0) / RES), int(max(radius - 11.0, 5.0) / RES))
    cv2.ellipse(
        g.cls,
        (int((centre[0] - lo[0]) / RES), int((centre[1] - lo[1]) / RES)),
        axes,
        float(rng.uniform(0, 180)),
        0,
        360,
        int(WATER),
        -1,
    )


def _draw_rail(g: GroundMap, net: Network) -> None:
    """Rail ballast across the town between two rows of junctions, so every road across it has a
    level crossing to see it from."""
    g.rail_y = rail_line_y(net.nodes[:, 1])
    r0 = int((g.rail_y - 1.6 - g.origin[1]) / RES)
    g.cls[r0 : r0 + int(3.2 / RES), :] = RAIL


def _draw_road_and_sidewalk(g: GroundMap, road_mask: np.ndarray) -> None:
    """Road over the mask, and a sidewalk band around it (junction corners come out round)."""
    dist = cv2.distanceTransform((1 - road_mask).astype(np.uint8), cv2.DIST_L2, 5)
    sidewalk = (dist > 0) & (dist <= SIDEWALK_WIDTH / RES)
    g.cls[sidewalk] = SIDEWALK
    g.cls[road_mask.astype(bool)] = ROAD
    g.variant[sidewalk] = 0


def _draw_lane_markings(g: GroundMap, road: Road) -> None:
    """Centre line (dashed yellow on one-lane roads, double solid yellow otherwise), dashed white lane
    dividers and solid white edge lines."""
    hw, pts = road.half_width, road.points
    if road.lanes == 1:
        for dash in _dashes(pts):
            _line(g, dash, LINE, YELLOW, DASHED)
    else:
        _line(g, offset(pts, -0.15), LINE, YELLOW, SOLID)
        _line(g, offset(pts, 0.15), LINE, YELLOW, SOLID)
        for side in (-1, 1):
            for dash in _dashes(offset(pts, side * LANE_WIDTH)):
                _line(g, dash, LINE, WHITE, DASHED)
    for side in (-1, 1):
        _line(g, offset(pts, side * (hw - 0.3)), LINE, WHITE, SOLID)


def _draw_stop_and_crossing(g: GroundMap, end_pts: np.ndarray, hw: float) -> None:
    """Stop line across the incoming half of a road ending (at `end_pts[-1]`) at a signalised
    junction, and a zebra crossing between it and the junction, stripes along the road."""
    cum = polyline_lengths(end_pts)
    stop = resample(end_pts, np.array([cum[-1] - STOP_BACK]))[0]
    d = end_pts[-1] - end_pts[-2]
    d = d / np.linalg.norm(d)
    right = np.array([-d[1], d[0]])
    _line(g, np.stack([stop + right * 0.1, stop + right * (hw - 0.3)]), LINE, WHITE, 0, width_m=0.4)
    for u in np.arange(-hw + 0.6, hw - 0.4, 1.0):
        a = stop + d * 0.8 + right * u
        stripe = np.stack([a, a + d * 2.6, a + d * 2.6 + right * 0.5, a + right * 0.5])
        _fill(g, stripe, g.cls, LINE)
        _fill(g, stripe, g.variant, WHITE)


def rail_line_y(node_y: np.ndarray) -> float:
    """The middle of the widest gap between junction rows (the one nearest the centre on ties)."""
    ys = np.sort(node_y)
    gaps = np.diff(ys)
    mids = (ys[1:] + ys[:-1]) / 2
    score = gaps - 1e-3 * np.abs(mids - ys.mean())
    return float(mids[int(np.argmax(score))])


def coarse_blocked(g: GroundMap) -> np.ndarray:
    """Coarse occupancy (COARSE x COARSE cells): True where anything but open ground lies."""
    h, w = g.cls.shape
    blocked = (g.cls != GROUND).reshape(h // COARSE, COARSE, w // COARSE, COARSE).any(axis=(1, 3))
    return blocked.astype(np.uint8)


__all__ = ["GroundMap", "build_ground", "coarse_blocked", "RES", "COARSE", "DASHED", "SOLID"]
