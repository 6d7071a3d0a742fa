"""Geometry of `Frame.hazards` on CARLA: gaps to a lead actor and to a red light's stop line, from NumPy arrays.

Everything here works in the ego vehicle's frame of `carla.Transform.get_matrix()` (x forward, y right,
z up, metres) and measures gaps from the ego's front bumper, as the embedded backend does.
"""

from __future__ import annotations

import math

import numpy as np

CORRIDOR_MARGIN_M = 0.4  # m of clearance beside the ego's sides, as in the embedded autopilot
LEAD_RANGE_M = 40.0  # m of corridor ahead of the ego's centre, as in the embedded autopilot
MAX_HEIGHT_M = 3.0  # m above or below the ego beyond which an actor is on another level (bridges, overpasses)
STOP_TOLERANCE_M = 0.3  # m the front bumper may overrun a stop line before the light no longer applies
STOP_RANGE_M = 50.0  # m of route ahead of the ego's centre searched for red lights' stop lines
MAX_STOP_TURN_DEG = 45.0  # degrees a stop waypoint's lane may turn from the route and still be the ego's


def in_ego_frame(ego_matrix: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (M, 3) and yaws (M,) in radians of actors with 4x4 world matrices (M, 4, 4), in the ego's frame."""
    local = np.linalg.inv(np.asarray(ego_matrix, dtype=np.float64)) @ np.asarray(matrices, dtype=np.float64).reshape(
        -1, 4, 4
    )
    return local[:, :3, 3], np.arctan2(local[:, 1, 0], local[:, 0, 0])


def corridor(path: np.ndarray | None, length: float = LEAD_RANGE_M) -> np.ndarray:
    """(K, 2) polyline of the lane corridor's centre line from the ego's origin, at least `length` m long.

    It runs through the points of `path` (route waypoints in the ego frame) that lie ahead (x > 0) and is
    continued straight past the last one; with no such points it is the ego's x axis.
    """
    points = [np.zeros(2)]
    if path is not None:
        for p in np.asarray(path, dtype=np.float64).reshape(-1, 2):
            if p[0] > 0 and np.linalg.norm(p - points[-1]) > 1e-6:
                points.append(p)
    if len(points) < 2:
        points.append(np.array([length, 0.0]))
    line = np.array(points)
    total = float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())
    if total < length:
        direction = (line[-1] - line[-2]) / np.linalg.norm(line[-1] - line[-2])
        line = np.vstack([line, line[-1] + (length - total) * direction])
    return line


def _onto_line(xy: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where points (M, 2) fall on a polyline (K, 2): arc length from its start to their closest point on it,
    their distance from it, and the direction (radians) of the segment that point lies on."""
    start, seg = line[:-1], np.diff(line, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1]
    q = xy[:, None, :] - start[None]  # (M, S, 2)
    t = np.clip((q * seg[None]).sum(-1) / seg_len**2, 0.0, 1.0)
    offset = np.linalg.norm(q - t[..., None] * seg[None], axis=-1)
    k = np.argmin(offset, axis=1)
    rows = np.arange(len(xy))
    return arc[k] + t[rows, k] * seg_len[k], offset[rows, k], np.arctan2(seg[k, 1], seg[k, 0])


def lead_distance(
    centres: np.ndarray,
    yaws: np.ndarray,
    extents: np.ndarray,
    ego_extents: tuple[float, float],
    path: np.ndarray | None = None,
    max_range: float = LEAD_RANGE_M,
) -> float:
    """Gap in metres from the ego's front bumper to the nearest actor in its lane corridor; inf when none.

    `centres` (M, 3) and `yaws` (M,) are other actors in the ego frame (see `in_ego_frame`), `extents`
    (M, 2) their bounding boxes' half length and half width, `ego_extents` the ego's (zeros measure from
    centres). The corridor follows `corridor(path)` and is as wide as the ego plus `CORRIDOR_MARGIN_M` on
    each side (about 1.75 m either side of the centre line for a car): an actor counts when it is in front
    (x > 0), its centre projects onto the centre line within `max_range` m of the ego, its box reaches into
    the corridor (centre offset at most the corridor's half-width plus its own half-extent across the
    line), and it is within `MAX_HEIGHT_M` of the ego's level. The gap runs along the centre line, less
    the ego's half length and the actor's half-extent along the line, and is never negative.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    if not len(centres):
        return math.inf
    ego_half_length, ego_half_width = ego_extents
    along_line, offset, direction = _onto_line(centres[:, :2], corridor(path, max_range))
    heading = np.asarray(yaws, dtype=np.float64) - direction
    extents = np.asarray(extents, dtype=np.float64).reshape(-1, 2)
    half_along = np.abs(extents[:, 0] * np.cos(heading)) + np.abs(extents[:, 1] * np.sin(heading))
    half_across = np.abs(extents[:, 0] * np.sin(heading)) + np.abs(extents[:, 1] * np.cos(heading))
    inside = (
        (centres[:, 0] > 0)
        & (along_line > 0)
        & (along_line <= max_range)
        & (offset <= ego_half_width + CORRIDOR_MARGIN_M + half_across)
        & (np.abs(centres[:, 2]) <= MAX_HEIGHT_M)
    )
    if not inside.any():
        return math.inf
    return max(float(np.min(along_line[inside] - half_along[inside])) - ego_half_length, 0.0)


def red_light_distance(
    stop_points: np.ndarray,
    stop_yaws: np.ndarray,
    ego_extents: tuple[float, float],
    path: np.ndarray | None = None,
    max_range: float = STOP_RANGE_M,
) -> float:
    """Gap in metres from the ego's front bumper to the nearest stop line ahead on its route; inf when none.

    `stop_points` (K, 3) and `stop_yaws` (K,) are the stop waypoints of red or yellow lights in the ego
    frame (see `in_ego_frame`; a waypoint's yaw is its lane's direction), `ego_extents` the ego's half
    length and half width. A point counts when it lies in the lane corridor of `corridor(path)` (offset
    from the centre line at most the ego's half width plus `CORRIDOR_MARGIN_M`, as in `lead_distance`),
    projects onto the centre line within (0, `max_range`] m of the ego, its lane runs within 45 degrees of
    the centre line there (so the opposite lane's and crossing streets' stop lines do not count), it is
    within `MAX_HEIGHT_M` of the ego's level, and the front bumper has not passed it by more than
    `STOP_TOLERANCE_M`. The gap runs along the centre line, less the ego's half length, and is never negative.
    """
    stop_points = np.asarray(stop_points, dtype=np.float64).reshape(-1, 3)
    if not len(stop_points):
        return math.inf
    ego_half_length, ego_half_width = ego_extents
    along_line, offset, direction = _onto_line(stop_points[:, :2], corridor(path, max_range))
    turn = (np.asarray(stop_yaws, dtype=np.float64) - direction + math.pi) % (2 * math.pi) - math.pi
    gap = along_line - ego_half_length
    ahead = (
        (along_line > 0)
        & (along_line <= max_range)
        & (gap > -STOP_TOLERANCE_M)
        & (offset <= ego_half_width + CORRIDOR_MARGIN_M)
        & (np.abs(turn) <= math.radians(MAX_STOP_TURN_DEG))
        & (np.abs(stop_points[:, 2]) <= MAX_HEIGHT_M)
    )
    return max(float(gap[ahead].min()), 0.0) if ahead.any() else math.inf
