"""Polyline maths on (N, 2) arrays of ground points: arc length, resampling, normals, offsets, Bezier curves.

Coordinates are CARLA's (x, y on the ground, left-handed), so the right-hand normal of a direction
(dx, dy) is (-dy, dx).
"""

from __future__ import annotations

import numpy as np


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


def trim(points: np.ndarray, start: float, end: float) -> np.ndarray:
    """The part of a polyline from arc length `start` to `end` metres before its last point."""
    cum = polyline_lengths(points)
    s = np.concatenate([[start], cum[(cum > start) & (cum < cum[-1] - end)], [cum[-1] - end]])
    return resample(points, s)
