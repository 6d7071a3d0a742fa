"""Following progress along a route polyline, for any backend."""

from __future__ import annotations

import numpy as np

from .contract import Route


class RouteTracker:
    """Tracks how far the ego has driven along a route and reports the next waypoints in its frame.

    Progress only moves forward and is searched in a short window ahead of the last match, so a
    route that passes near itself (a loop, a U-turn) is not skipped.
    """

    def __init__(
        self, points: np.ndarray, num_waypoints: int = 10, spacing: float = 2.0, search_ahead: float = 30.0
    ) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] not in (2, 3) or len(points) < 2:
            raise ValueError(f"a route needs at least 2 points of (x, y[, z]), got shape {points.shape}")
        self.points = points[:, :2]
        seg = np.diff(self.points, axis=0)
        self._seg_len = np.linalg.norm(seg, axis=1)
        self._cum = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self.length = float(self._cum[-1])
        self.num_waypoints = num_waypoints
        self.spacing = spacing
        self.search_ahead = search_ahead
        self.progress = 0.0
        self.deviation = 0.0  # distance from the route at the last update, metres
        self._segment = 0

    def _project(self, xy: np.ndarray) -> tuple[float, float]:
        """Arc length of the closest point ahead on the route, and the distance to it."""
        end = int(np.searchsorted(self._cum, self._cum[self._segment] + self.search_ahead)) + 1
        idx = np.arange(self._segment, min(end, len(self._seg_len)))
        a, b = self.points[idx], self.points[idx + 1]
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", xy - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(a + t[:, None] * ab - xy, axis=1)
        k = int(np.argmin(dist))
        self._segment = int(idx[k])
        return float(self._cum[idx[k]] + t[k] * self._seg_len[idx[k]]), float(dist[k])

    def point_at(self, s: np.ndarray) -> np.ndarray:
        """World (x, y) of the route at arc lengths `s` (clamped to the route)."""
        s = np.clip(s, 0.0, self.length)
        return np.stack(
            [np.interp(s, self._cum, self.points[:, 0]), np.interp(s, self._cum, self.points[:, 1])], axis=-1
        )

    def ahead(self, ego_to_world: np.ndarray, count: int) -> np.ndarray:
        """(count, 2) route points every `spacing` m past the current progress, in the ego frame (x forward, y right)."""
        ahead = self.point_at(self.progress + self.spacing * np.arange(1, count + 1))
        m = np.asarray(ego_to_world, dtype=np.float64)
        world = np.concatenate([ahead, np.full((len(ahead), 1), m[2, 3])], axis=1)
        return ((world - m[:3, 3]) @ m[:3, :3])[:, :2]  # rows of R^T (p - t): world points in the ego frame

    def update(self, ego_to_world: np.ndarray) -> Route:
        """Advance progress to the ego's position and return the Route seen from the ego."""
        xy = np.asarray(ego_to_world)[:2, 3]
        s, self.deviation = self._project(xy)
        self.progress = max(self.progress, s)
        return Route(
            waypoints=self.ahead(ego_to_world, self.num_waypoints).astype(np.float32),
            distance_left=self.length - self.progress,
            length=self.length,
            spacing=self.spacing,
        )
