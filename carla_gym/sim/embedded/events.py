"""Ego events: collisions (oriented-box overlap), lane invasions, off-road, red-light running."""

from __future__ import annotations

import numpy as np

from perception.conventions import CLASS_IDS

from ..contract import Event, EventKind
from .ground import DASHED, GroundMap
from .lights import RED, TrafficLights
from .scenery import Obstacles

ON_ROAD = (CLASS_IDS["Road"], CLASS_IDS["RoadLine"])
EGO_MASS = 1500.0  # kg, for the collision impulse


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of oriented boxes [cx, cy, half_len, half_wid, yaw]."""
    c, s = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    sx = np.array([1, 1, -1, -1])[None] * boxes[:, 2:3]
    sy = np.array([1, -1, -1, 1])[None] * boxes[:, 3:4]
    return np.stack(
        [boxes[:, 0:1] + sx * c[:, None] - sy * s[:, None], boxes[:, 1:2] + sx * s[:, None] + sy * c[:, None]], axis=-1
    )


def overlaps(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of `boxes` (N, 5) overlap `box` (5,): separating-axis test on the 4 candidate axes."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    a = _corners(box[None])[0]  # (4, 2)
    b = _corners(boxes)  # (N, 4, 2)
    axes_a = np.array([[np.cos(box[4]), np.sin(box[4])], [-np.sin(box[4]), np.cos(box[4])]])  # (2, 2)
    axes_b = np.stack(
        [
            np.stack([np.cos(boxes[:, 4]), np.sin(boxes[:, 4])], -1),
            np.stack([-np.sin(boxes[:, 4]), np.cos(boxes[:, 4])], -1),
        ],
        axis=1,
    )  # (N, 2, 2)
    axes = np.concatenate([np.broadcast_to(axes_a, (len(boxes), 2, 2)), axes_b], axis=1)  # (N, 4, 2)
    pa = np.einsum("nkd,cd->nkc", axes, a)  # (N, 4 axes, 4 corners)
    pb = np.einsum("nkd,ncd->nkc", axes, b)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(axis=1)


class EventDetector:
    """Checks one ego move (previous and current pose) against the world."""

    def __init__(self, ground: GroundMap, obstacles: Obstacles, lights: TrafficLights) -> None:
        self.ground, self.obstacles, self.lights = ground, obstacles, lights
        self._on_mark = 0

    def reset(self, xy: np.ndarray) -> None:
        self._on_mark = int(self.ground.mark_at(xy))

    def collision(self, ego_box: np.ndarray, vehicles: np.ndarray, pedestrians: np.ndarray) -> int | None:
        """Class id of what the ego box hits (pedestrians first, then vehicles, then static), or None."""
        reach = float(np.hypot(ego_box[2], ego_box[3]))
        if len(pedestrians):
            pedestrians = pedestrians[np.abs(pedestrians - ego_box[:2]).max(axis=1) < reach + 0.5]
        if len(vehicles):
            vehicles = vehicles[
                np.abs(vehicles[:, :2] - ego_box[:2]).max(axis=1) < reach + np.hypot(vehicles[:, 2], vehicles[:, 3])
            ]
        if len(pedestrians):
            peds = np.concatenate(
                [pedestrians, np.full((len(pedestrians), 2), 0.3), np.zeros((len(pedestrians), 1))], axis=1
            )
            if overlaps(ego_box, peds).any():
                return CLASS_IDS["Pedestrian"]
        if len(vehicles) and overlaps(ego_box, vehicles).any():
            return CLASS_IDS["Vehicles"]
        near = self.obstacles.near(ego_box[0], ego_box[1], float(np.hypot(ego_box[2], ego_box[3])))
        if len(near):
            hit = overlaps(ego_box, self.obstacles.boxes[near])
            if hit.any():
                return int(self.obstacles.classes[near[np.argmax(hit)]])
        return None

    def move_events(self, prev_xy: np.ndarray, xy: np.ndarray, t: float) -> list[Event]:
        """Lane invasions and red lights along the move, and off-road at its end.

        A lane invasion is reported when the ego's centre enters a lane marking (solid or dashed)
        it was not already on; off-road is reported on every tick the centre is off the road.
        """
        events: list[Event] = []
        dist = float(np.linalg.norm(xy - prev_xy))
        n = max(2, int(dist / 0.05) + 1)
        path = prev_xy + (xy - prev_xy) * np.linspace(0, 1, n)[:, None]
        marks = self.ground.mark_at(path)
        state = self._on_mark
        for m in marks[1:]:
            if m and not state:
                events.append(Event(EventKind.LANE_INVASION, detail="dashed" if m == DASHED else "solid"))
            state = int(m)
        self._on_mark = state
        if int(self.ground.class_at(xy)) not in ON_ROAD:
            events.append(Event(EventKind.OFF_ROAD))
        sl = self.lights.stop_lines
        if dist > 1e-6 and len(sl["lane"]):
            crossed = _segments_cross(prev_xy, xy, sl["a"], sl["b"]) & ((xy - prev_xy) @ sl["d"].T > 0)
            if crossed.any():
                lanes = sl["lane"][crossed]
                if (self.lights.lane_state(lanes, t) == RED).any():
                    events.append(Event(EventKind.RED_LIGHT))
        return events


def _segments_cross(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether segment p-q crosses each segment a[i]-b[i]."""

    def orient(u, v, w):
        return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0])

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return (d1 * d2 < 0) & (d3 * d4 < 0)
