"""Pedestrians: walk along the sidewalks and sometimes cross the road on a zebra crossing (or where sent)."""

from __future__ import annotations

import numpy as np

from perception.conventions import CLASS_IDS

from .network import SIDEWALK_WIDTH, STOP_BACK, Network
from .polylines import offset, polyline_lengths, resample

CLOTHES = np.array(
    [
        (0.6, 0.1, 0.1),
        (0.1, 0.2, 0.5),
        (0.2, 0.2, 0.22),
        (0.85, 0.8, 0.7),
        (0.2, 0.45, 0.25),
        (0.7, 0.5, 0.1),
        (0.45, 0.2, 0.5),
        (0.9, 0.9, 0.9),
    ]
)
CROSS_CHANCE = 0.4  # at a crossing, chance a pedestrian crosses instead of turning back


class Crowd:
    """Pedestrians on sidewalk paths (one per road side) and crossing paths (across a road end)."""

    def __init__(self, net: Network, count: int, rng: np.random.Generator) -> None:
        self.rng = rng
        paths: list[np.ndarray] = []
        # side_path[road][side] -> path id; crossing[(road, end)] -> path id from side -1 to side +1
        self.side_path: dict[tuple[int, int], int] = {}
        self.crossing: dict[tuple[int, int], int] = {}
        # ("side", road, side), ("cross", road, end) or ("jaywalk", far side path, s on it)
        self.kind: list[tuple] = []
        signalised = net.signalised
        for k, road in enumerate(net.roads):
            cum = polyline_lengths(road.points)
            length = cum[-1]
            cross_s = {0: STOP_BACK - 2.1, 1: length - STOP_BACK + 2.1}  # zebra centres (see ground.py)
            s0 = cross_s[0] if signalised[road.a] else 0.5
            s1 = cross_s[1] if signalised[road.b] else length - 0.5
            if s1 - s0 < 4.0:
                continue
            s = np.linspace(s0, s1, max(2, int((s1 - s0) / 2.0) + 1))
            centre = resample(road.points, s)
            off = road.half_width + SIDEWALK_WIDTH * 0.55
            for side in (-1, 1):
                self.side_path[(k, side)] = len(paths)
                self.kind.append(("side", k, side))
                paths.append(offset(centre, side * off))
            for end, node in ((0, road.a), (1, road.b)):
                if signalised[node]:
                    a = self.side_path_point(paths, k, -1, end)
                    b = self.side_path_point(paths, k, 1, end)
                    self.crossing[(k, end)] = len(paths)
                    self.kind.append(("cross", k, end))
                    paths.append(np.stack([a, b]))
        self.paths = paths
        self._pack()
        side_ids = [i for i, kd in enumerate(self.kind) if kd[0] == "side"]
        n = count if side_ids else 0
        self.path = rng.choice(side_ids, size=n) if n else np.zeros(0, np.int64)
        self.s = rng.uniform(0, 1, n) * self.lengths[self.path] if n else np.zeros(0)
        self.dir = rng.choice([-1.0, 1.0], size=n)
        self.speed = rng.uniform(0.9, 1.6, n)
        self.height = rng.uniform(1.55, 1.9, n)
        self.colour = CLOTHES[rng.integers(0, len(CLOTHES), n)]
        self.xy = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self._update_pose()

    def _pack(self) -> None:
        """Pack all paths end to end (1 m apart), so every pose is one np.interp."""
        paths = self.paths
        self.lengths = np.array([polyline_lengths(p)[-1] for p in paths]) if paths else np.zeros(0)
        self._start = np.concatenate([[0.0], np.cumsum(self.lengths + 1.0)[:-1]]) if paths else np.zeros(0)
        if paths:
            self._g = np.concatenate([st + polyline_lengths(p) for st, p in zip(self._start, paths, strict=False)])
            self._x, self._y = np.concatenate(paths)[:, 0], np.concatenate(paths)[:, 1]

    def send_across(self, i: int, road: int, point: np.ndarray) -> bool:
        """Start pedestrian `i` crossing road `road` through `point`, away from a zebra crossing.

        It starts on the sidewalk path of the side nearer `point`, walks straight across to the other
        side's, and walks on along that one. Returns False (and moves nobody) where the road has no
        sidewalk paths. Draws nothing from the generator, so the rest of the crowd stays as drawn.
        """
        if (road, -1) not in self.side_path:
            return False
        ends = {}
        for side in (-1, 1):
            path = self.paths[self.side_path[(road, side)]]
            k = int(np.argmin(np.linalg.norm(path - point, axis=1)))
            ends[side] = (path[k], float(polyline_lengths(path)[k]))
        near = min(ends, key=lambda side: float(np.linalg.norm(ends[side][0] - point)))
        self.kind.append(("jaywalk", self.side_path[(road, -near)], ends[-near][1]))
        self.paths.append(np.stack([ends[near][0], ends[-near][0]]))
        self._pack()
        self.path[i], self.s[i], self.dir[i] = len(self.paths) - 1, 0.0, 1.0
        self._update_pose()
        return True

    def side_path_point(self, paths: list[np.ndarray], road: int, side: int, end: int) -> np.ndarray:
        p = paths[self.side_path[(road, side)]]
        return p[0] if end == 0 else p[-1]

    def __len__(self) -> int:
        return len(self.path)

    def _update_pose(self) -> None:
        if not len(self):
            return
        g = self._start[self.path] + np.clip(self.s, 0.0, self.lengths[self.path])
        ahead = np.clip(g + 0.3 * self.dir, self._start[self.path], self._start[self.path] + self.lengths[self.path])
        x, y = np.interp(g, self._g, self._x), np.interp(g, self._g, self._y)
        self.xy = np.stack([x, y], axis=-1)
        self.yaw = np.arctan2(np.interp(ahead, self._g, self._y) - y, np.interp(ahead, self._g, self._x) - x)

    def step(self, dt: float, vehicles: np.ndarray) -> None:
        """Walk; at a path end turn back, step onto the crossing, or leave the crossing on the far side.

        `vehicles` (V, 2) are vehicle centres: a pedestrian waits rather than walk into one, and
        does not start crossing while a vehicle is near the crossing.
        """
        if not len(self):
            return
        heading = np.stack([np.cos(self.yaw), np.sin(self.yaw)], axis=-1)
        probe = self.xy + heading * 1.2
        blocked = np.zeros(len(self), bool)
        if len(vehicles):
            blocked = (np.linalg.norm(probe[:, None, :] - vehicles[None], axis=-1) < 3.0).any(axis=1)
        self.s = self.s + np.where(blocked, 0.0, self.dir * self.speed * dt)
        L = self.lengths[self.path] if len(self) else np.zeros(0)
        for i in np.flatnonzero((self.s < 0) | (self.s > L)):
            kind, road, which = self.kind[self.path[i]]
            end = 1 if self.s[i] > L[i] else 0
            if kind == "side":
                cross = self.crossing.get((road, end))
                busy = (
                    cross is not None
                    and len(vehicles)
                    and bool((np.linalg.norm(vehicles - self.paths[cross].mean(axis=0), axis=1) < 12.0).any())
                )
                if cross is not None and self.rng.random() < CROSS_CHANCE and not busy:
                    self.path[i], self.dir[i] = cross, 1.0 if which == -1 else -1.0
                    self.s[i] = 0.0 if which == -1 else self.lengths[cross]
                else:
                    self.dir[i] = -self.dir[i]
                    self.s[i] = np.clip(self.s[i], 0.0, L[i])
            elif kind == "jaywalk":  # on along the far sidewalk from where the crossing met it
                self.path[i], self.s[i], self.dir[i] = road, which, 1.0
            else:  # leave the crossing onto the other side's sidewalk, walking away from the junction
                side = 1 if end == 1 else -1
                nxt = self.side_path[(road, side)]
                self.path[i] = nxt
                self.dir[i] = -1.0 if which == 1 else 1.0
                self.s[i] = self.lengths[nxt] if which == 1 else 0.0
        self._update_pose()

    def on_road_crossing(self) -> np.ndarray:
        """Which pedestrians are crossing a road (on a zebra crossing or sent across)."""
        return np.array([self.kind[p][0] in ("cross", "jaywalk") for p in self.path], dtype=bool)

    def instances(self) -> np.ndarray:
        """(N, 11) render instances."""
        n = len(self)
        return np.concatenate(
            [
                self.xy,
                np.zeros((n, 1)),
                self.yaw[:, None],
                np.ones((n, 2)),
                self.height[:, None],
                self.colour,
                np.full((n, 1), CLASS_IDS["Pedestrian"]),
            ],
            axis=1,
        ).astype(np.float32)
