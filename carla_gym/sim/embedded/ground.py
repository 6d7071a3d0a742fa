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

from .network import LANE_WIDTH, SIDEWALK_WIDTH, STOP_BACK, Network
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
    """Rasterise roads, junctions, markings, sidewalks, water and rail ballast."""
    lo = net.nodes.min(axis=0) - MARGIN
    hi = net.nodes.max(axis=0) + MARGIN
    w = int(math.ceil((hi[0] - lo[0]) / RES / COARSE)) * COARSE
    h = int(math.ceil((hi[1] - lo[1]) / RES / COARSE)) * COARSE
    g = GroundMap(
        origin=lo.astype(np.float64),
        cls=np.full((h, w), GROUND, np.uint8),
        variant=np.zeros((h, w), np.uint8),
        marks=np.zeros((h, w), np.uint8),
    )
    px = g.to_pixels

    def fill(poly: np.ndarray, target: np.ndarray, value: int) -> None:
        cv2.fillPoly(target, [px(poly)], int(value), lineType=cv2.LINE_8, shift=3)

    def line(points: np.ndarray, cls: int, colour: int, mark: int, width_m: float = 0.15) -> None:
        t = max(1, int(round(width_m / RES)))
        p = [px(points)]
        cv2.polylines(g.cls, p, False, int(cls), thickness=t, lineType=cv2.LINE_8, shift=3)
        cv2.polylines(g.variant, p, False, int(colour), thickness=t, lineType=cv2.LINE_8, shift=3)
        if mark:
            cv2.polylines(g.marks, p, False, int(mark), thickness=t, lineType=cv2.LINE_8, shift=3)

    road_mask = np.zeros((h, w), np.uint8)
    for road in net.roads:
        hw = road.half_width
        poly = np.concatenate([offset(road.points, -hw), offset(road.points, hw)[::-1]])
        fill(poly, road_mask, 1)
        fill(poly, g.variant, int(rng.integers(0, 4)))
    for n, ks in enumerate(net.node_roads):
        corners = []
        for k in ks:
            road = net.roads[k]
            end = road.points[0] if road.a == n else road.points[-1]
            nrm = offset(road.points, 1.0) - road.points
            nv = nrm[0] if road.a == n else nrm[-1]
            corners += [end + nv * road.half_width, end - nv * road.half_width]
        hull = cv2.convexHull(np.array(corners, np.float32))[:, 0, :]
        fill(hull, road_mask, 1)

    for lane in net.lanes:  # junction connectors: the turning paths always lie on the road
        if lane.road < 0:
            cv2.polylines(road_mask, [px(lane.points)], False, 1, thickness=int((LANE_WIDTH + 1.5) / RES), shift=3)

    # Water and rail first (roads and sidewalks are drawn over them). The waterfront runs just past the
    # outer road (in view, not behind its frontage); the rail line crosses the town between two rows of
    # junctions, so every road across it has a level crossing to see it from.
    outer = max(r.half_width for r in net.roads) + SIDEWALK_WIDTH + 0.6
    if spec.water:
        if spec.layout in ("ladder", "ring"):
            y_edge = float(net.nodes[:, 1].max() + outer)  # a quay just past the outer road's sidewalk
            g.cls[int((y_edge - lo[1]) / RES) :, :] = WATER
            g.water_edge = ("y", y_edge)
        else:
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
    if spec.rail:
        g.rail_y = rail_line_y(net.nodes[:, 1])
        r0 = int((g.rail_y - 1.6 - lo[1]) / RES)
        g.cls[r0 : r0 + int(3.2 / RES), :] = RAIL

    # Sidewalks: a band around the road surface (junction corners come out round).
    dist = cv2.distanceTransform((1 - road_mask).astype(np.uint8), cv2.DIST_L2, 5)
    sidewalk = (dist > 0) & (dist <= SIDEWALK_WIDTH / RES)
    g.cls[sidewalk] = SIDEWALK
    g.cls[road_mask.astype(bool)] = ROAD
    g.variant[sidewalk] = 0

    signalised = net.signalised
    for road in net.roads:
        hw, pts = road.half_width, road.points
        if road.lanes == 1:
            for dash in _dashes(pts):
                line(dash, LINE, YELLOW, DASHED)
        else:
            line(offset(pts, -0.15), LINE, YELLOW, SOLID)
            line(offset(pts, 0.15), LINE, YELLOW, SOLID)
            for side in (-1, 1):
                for dash in _dashes(offset(pts, side * LANE_WIDTH)):
                    line(dash, LINE, WHITE, DASHED)
        for side in (-1, 1):
            line(offset(pts, side * (hw - 0.3)), LINE, WHITE, SOLID)
        for node, end_pts in ((road.b, pts), (road.a, pts[::-1])):
            if not signalised[node]:
                continue
            cum = polyline_lengths(end_pts)
            stop = resample(end_pts, np.array([cum[-1] - STOP_BACK]))[0]
            d = end_pts[-1] - end_pts[-2]
            d = d / np.linalg.norm(d)
            right = np.array([-d[1], d[0]])
            line(np.stack([stop + right * 0.1, stop + right * (hw - 0.3)]), LINE, WHITE, 0, width_m=0.4)
            # Zebra crossing between the stop line and the junction, stripes along the road.
            for u in np.arange(-hw + 0.6, hw - 0.4, 1.0):
                a = stop + d * 0.8 + right * u
                fill(np.stack([a, a + d * 2.6, a + d * 2.6 + right * 0.5, a + right * 0.5]), g.cls, LINE)
                fill(np.stack([a, a + d * 2.6, a + d * 2.6 + right * 0.5, a + right * 0.5]), g.variant, WHITE)
    return g


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
