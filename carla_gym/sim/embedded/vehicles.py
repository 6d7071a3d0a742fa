"""NPC vehicles: lane following on the lane graph with the Intelligent Driver Model, vectorised.

Why not highway-env: its road network (StraightLane / CircularLane with string node keys) and
IDMVehicle are a good model of car-following, but every vehicle is a Python object stepped one at
a time, it has no traffic lights or pedestrians, it pulls in pygame, and its frame is y-down
right-handed. A frame of our world must cost well under a millisecond of simulation, so the same
IDM equations (Treiber et al. 2000, the ones highway-env uses) are written here over NumPy arrays
of all vehicles at once, on our own lane graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.conventions import CLASS_IDS

from .lights import GREEN, YELLOW, TrafficLights
from .network import Network

KINDS = ("car", "van", "truck")
SIZES = {"car": (4.5, 1.9, 1.5), "van": (5.2, 2.0, 2.1), "truck": (7.5, 2.4, 3.2)}
COLOURS = np.array(
    [
        (0.75, 0.1, 0.08),
        (0.1, 0.2, 0.6),
        (0.85, 0.85, 0.85),
        (0.08, 0.08, 0.09),
        (0.5, 0.52, 0.55),
        (0.9, 0.7, 0.1),
        (0.15, 0.45, 0.2),
        (0.55, 0.25, 0.1),
        (0.95, 0.95, 0.93),
        (0.3, 0.05, 0.3),
    ]
)

# IDM parameters
A_MAX, B_COMF, S0, HEADWAY, DELTA = 1.6, 2.5, 2.5, 1.2, 4.0
TURN_SPEED = 5.5  # m/s on junction connectors
STUCK_S = 60.0  # an NPC standing this long (not at a light) is moved elsewhere
PATH_STEPS = np.arange(1.0, 25.0, 1.5)  # look-ahead samples along an NPC's path, metres


def idm(v: np.ndarray, v0: np.ndarray, gap: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """IDM acceleration for speeds v, desired speeds v0, bumper gaps and closing speeds dv = v - v_leader."""
    s_star = S0 + np.maximum(v * HEADWAY + v * dv / (2.0 * np.sqrt(A_MAX * B_COMF)), 0.0)
    free = 1.0 - (v / np.maximum(v0, 0.1)) ** DELTA
    return np.clip(A_MAX * (free - (s_star / np.maximum(gap, 0.1)) ** 2), -9.0, A_MAX)


def vehicle_points(
    xy: np.ndarray, yaw: np.ndarray, length: np.ndarray, half_width: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Three circles (rear, centre, front) covering each vehicle: (3N, 2) centres and (3N,) radii."""
    off = (length / 2 - half_width)[:, None] * np.array([-1.0, 0.0, 1.0])[None]  # (N, 3)
    d = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    pts = xy[:, None, :] + off[..., None] * d[:, None, :]
    return pts.reshape(-1, 2), np.repeat(half_width, 3)


class LaneTable:
    """All lane polylines packed into flat arrays, so poses of many (lane, s) pairs are one np.interp."""

    def __init__(self, net: Network) -> None:
        self.length = np.array([lane.length for lane in net.lanes])
        self.start = np.concatenate([[0.0], np.cumsum(self.length + 1.0)[:-1]])
        self.g = np.concatenate([self.start[i] + lane.cum for i, lane in enumerate(net.lanes)])
        pts = np.concatenate([lane.points for lane in net.lanes])
        self.x, self.y = pts[:, 0], pts[:, 1]
        self.successors = [lane.successors for lane in net.lanes]
        self.is_road = np.array([lane.road >= 0 for lane in net.lanes])

    def pose(self, lane: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) and heading of points at arc length s on lanes."""
        lo, hi = self.start[lane], self.start[lane] + self.length[lane]
        g = lo + np.clip(s, 0.0, self.length[lane])
        ga, gb = np.maximum(g - 0.75, lo), np.minimum(g + 0.75, hi)
        xy = np.stack([np.interp(g, self.g, self.x), np.interp(g, self.g, self.y)], axis=-1)
        dx = np.interp(gb, self.g, self.x) - np.interp(ga, self.g, self.x)
        dy = np.interp(gb, self.g, self.y) - np.interp(ga, self.g, self.y)
        return xy, np.arctan2(dy, dx)


@dataclass(frozen=True)
class RouteLanes:
    """The lanes a route runs through, from `start` metres into the first, and their lengths."""

    lanes: tuple[int, ...]
    start: float
    lengths: tuple[float, ...]

    def at(self, distance: float) -> tuple[int, float, tuple[int, ...]]:
        """The lane and arc length `distance` metres along the route, and the route's lanes after that one."""
        s = self.start + distance
        for k, lane in enumerate(self.lanes[:-1]):
            if s <= self.lengths[k]:
                return lane, s, self.lanes[k + 1 :]
            s -= self.lengths[k]
        return self.lanes[-1], min(s, self.lengths[-1]), ()


class Traffic:
    """NPC vehicles. Each follows its lane, picks a random turn at every junction, keeps its distance
    to whatever is ahead on its path (or in a cone in front: the ego, pedestrians, crossing cars) and
    stops at red and yellow lights."""

    def __init__(
        self,
        net: Network,
        table: LaneTable,
        lights: TrafficLights,
        count: int,
        speed_limit: float,
        rng: np.random.Generator,
        avoid: np.ndarray | None = None,
    ) -> None:
        self.net, self.table, self.lights, self.rng = net, table, lights, rng
        road_lanes = np.flatnonzero(table.is_road & (table.length > 15.0))
        weights = table.length[road_lanes] / table.length[road_lanes].sum()
        lanes: list[int] = []
        ss: list[float] = []
        placed: list[np.ndarray] = []
        for _ in range(count * 20):
            if len(lanes) == count:
                break
            lane = int(rng.choice(road_lanes, p=weights))
            s = float(rng.uniform(2.0, table.length[lane] - 8.0))
            xy, _ = table.pose(np.array([lane]), np.array([s]))
            others = placed + ([] if avoid is None else [avoid])
            if others:
                d = np.linalg.norm(np.array(others) - xy[0], axis=1)
                if (d < np.where(np.arange(len(others)) < len(placed), 12.0, 25.0)).any():
                    continue
            lanes.append(lane)
            ss.append(s)
            placed.append(xy[0])
        n = len(lanes)
        self.lane = np.array(lanes, dtype=np.int64)
        self.s = np.array(ss)
        self.kind = rng.choice(len(KINDS), size=n, p=[0.7, 0.2, 0.1])
        self.size = np.array([SIZES[KINDS[k]] for k in self.kind]).reshape(-1, 3)
        self.colour = COLOURS[rng.integers(0, len(COLOURS), n)]
        self.v0 = speed_limit * rng.uniform(0.75, 1.05, n)
        self.v = self.v0 * rng.uniform(0.3, 0.9, n)
        self.n1 = np.array([self._choose(int(lane)) for lane in self.lane], dtype=np.int64)
        self.n2 = np.array([self._choose(int(lane)) for lane in self.n1], dtype=np.int64)
        self.stuck = np.zeros(n)
        self.xy, self.yaw = table.pose(self.lane, self.s)

    def __len__(self) -> int:
        return len(self.lane)

    def _choose(self, lane: int) -> int:
        succ = self.table.successors[lane]
        return int(succ[int(self.rng.integers(0, len(succ)))])

    def step(self, dt: float, t: float, ego: np.ndarray, ego_speed: float, peds: np.ndarray) -> None:
        """Advance every NPC by dt. `ego` is (x, y, yaw, length, width); `peds` is (P, 2)."""
        n = len(self)
        if n == 0:
            return
        L = self.table.length
        # Leaders on the own path: same lane ahead, or on the next two lanes.
        lane_len, n1_len = L[self.lane], L[self.n1]
        ahead_same = (self.lane[None, :] == self.lane[:, None]) & (self.s[None, :] > self.s[:, None])
        gap = np.where(ahead_same, self.s[None, :] - self.s[:, None], np.inf)
        gap = np.where(self.lane[None, :] == self.n1[:, None], (lane_len - self.s)[:, None] + self.s[None, :], gap)
        gap = np.where(
            self.lane[None, :] == self.n2[:, None], (lane_len - self.s + n1_len)[:, None] + self.s[None, :], gap
        )
        gap = gap - (self.size[:, None, 0] + self.size[None, :, 0]) / 2
        np.fill_diagonal(gap, np.inf)
        lead = np.argmin(gap, axis=1)
        best = gap[np.arange(n), lead]
        dv = self.v - self.v[lead]
        # Anything on the path ahead (sampled over the current and next lane): the ego, pedestrians,
        # cars crossing or merging.
        veh_xy = np.concatenate([self.xy, ego[None, :2]])
        veh_yaw = np.concatenate([self.yaw, ego[2:3]])
        veh_len = np.concatenate([self.size[:, 0], ego[3:4]])
        pts, rad = vehicle_points(veh_xy, veh_yaw, veh_len, np.concatenate([self.size[:, 1], ego[4:5]]) / 2)
        others = np.concatenate([pts, peds.reshape(-1, 2)])
        owner = np.concatenate([np.repeat(np.arange(n + 1), 3), np.full(len(peds), -1)])
        half_wid = np.concatenate([rad, np.full(len(peds), 0.3)])
        half_len = np.concatenate([np.full(len(pts), 0.0), np.full(len(peds), 0.3)])
        speed = np.concatenate([np.repeat(np.concatenate([self.v, [ego_speed]]), 3), np.zeros(len(peds))])
        ahead = self.s[:, None] + PATH_STEPS[None, :]  # (N, K)
        over = ahead > lane_len[:, None]
        path_lane = np.where(over, self.n1[:, None], self.lane[:, None])
        path_s = np.where(over, ahead - lane_len[:, None], ahead)
        path_xy, _ = self.table.pose(path_lane.ravel(), path_s.ravel())
        path_xy = path_xy.reshape(n, len(PATH_STEPS), 2)
        # Only pairs within reach of the look-ahead are tested against the path samples.
        d2 = ((self.xy[:, None, :] - others[None, :, :]) ** 2).sum(-1)
        near = (d2 < (PATH_STEPS[-1] + 5.0) ** 2) & (owner[None, :] != np.arange(n)[:, None])
        pi, pm = np.nonzero(near)
        if len(pi):
            reach = self.size[pi, 1] / 2 + half_wid[pm] + 0.25
            dd = ((path_xy[pi] - others[pm][:, None, :]) ** 2).sum(-1)  # (P, K)
            hit = dd < (reach**2)[:, None]
            any_hit = hit.any(axis=1)
            along = PATH_STEPS[np.argmax(hit, axis=1)]
            pair_gap = np.where(any_hit, along - self.size[pi, 0] / 2 - half_len[pm], np.inf)
            path_gap = np.full(n, np.inf)
            path_speed = np.zeros(n)
            order = np.argsort(-pair_gap)  # write larger gaps first so the smallest wins
            path_gap[pi[order]] = pair_gap[order]
            path_speed[pi[order]] = speed[pm[order]]
            use_path = path_gap < best
            best = np.where(use_path, path_gap, best)
            dv = np.where(use_path, self.v - path_speed, dv)
        # Red lights: a standing obstacle at the stop line.
        state = self.lights.lane_state(self.lane, t)
        to_stop = self.lights.lane_stop_s[self.lane] - self.s - self.size[:, 0] / 2
        can_stop = self.v**2 / (2 * B_COMF * 1.5) < to_stop
        stop = (state != GREEN) & (to_stop > -0.5) & ((state != YELLOW) | can_stop)
        light_gap = np.where(stop, np.maximum(to_stop, 0.05), np.inf)
        red_first = light_gap < best
        dv = np.where(red_first, self.v, dv)
        best = np.minimum(best, light_gap)
        v0 = np.where(self.table.is_road[self.lane], self.v0, np.minimum(self.v0, TURN_SPEED))
        acc = idm(self.v, v0, np.where(np.isfinite(best), best, 1e6), np.where(np.isfinite(best), dv, 0.0))
        self.v = np.maximum(self.v + acc * dt, 0.0)
        self.s = self.s + self.v * dt
        for i in np.flatnonzero(self.s > L[self.lane]):
            while self.s[i] > L[self.lane[i]]:
                self.s[i] -= L[self.lane[i]]
                self.lane[i], self.n1[i] = self.n1[i], self.n2[i]
                self.n2[i] = self._choose(int(self.n1[i]))
        # Vehicles stuck for long (not at a light) are moved to a free lane far from the ego.
        self.stuck = np.where((self.v < 0.05) & ~stop, self.stuck + dt, 0.0)
        for i in np.flatnonzero(self.stuck > STUCK_S):
            self._respawn(int(i), ego[:2])
        self.xy, self.yaw = self.table.pose(self.lane, self.s)

    def place(self, i: int, lane: int, s: float, following: tuple[int, ...] = ()) -> None:
        """Move vehicle `i` to arc length `s` of `lane`, its next two lanes `following`'s first two where given
        (a route to keep to; beyond them it turns at random as every NPC does). Draws nothing from the
        generator, so the rest of the world an episode seed draws stays the same."""
        nxt = [*following[:2]]
        while len(nxt) < 2:
            nxt.append(int(self.table.successors[nxt[-1] if nxt else lane][0]))
        self.lane[i], self.s[i], self.n1[i], self.n2[i] = lane, s, nxt[0], nxt[1]
        self.xy, self.yaw = self.table.pose(self.lane, self.s)

    def _respawn(self, i: int, ego_xy: np.ndarray) -> None:
        road_lanes = np.flatnonzero(self.table.is_road & (self.table.length > 15.0))
        for _ in range(20):
            lane = int(self.rng.choice(road_lanes))
            s = float(self.rng.uniform(2.0, self.table.length[lane] - 8.0))
            xy, _ = self.table.pose(np.array([lane]), np.array([s]))
            if np.linalg.norm(xy[0] - ego_xy) > 60 and np.min(np.linalg.norm(self.xy - xy[0], axis=1)) > 12:
                self.lane[i], self.s[i], self.v[i], self.stuck[i] = lane, s, 0.0, 0.0
                self.n1[i] = self._choose(lane)
                self.n2[i] = self._choose(int(self.n1[i]))
                return

    def instances(self) -> dict[str, np.ndarray]:
        """Render instances per mesh kind: (N, 11) [x, y, z, yaw, length, width, height, r, g, b, class]."""
        out = {}
        rows = np.concatenate(
            [
                self.xy,
                np.zeros((len(self), 1)),
                self.yaw[:, None],
                self.size,
                self.colour,
                np.full((len(self), 1), CLASS_IDS["Vehicles"]),
            ],
            axis=1,
        ).astype(np.float32)
        for k, name in enumerate(KINDS):
            out[name] = rows[self.kind == k]
        return out

    def boxes(self) -> np.ndarray:
        """(N, 5) oriented boxes [cx, cy, half_len, half_wid, yaw] for collision checks."""
        return np.concatenate([self.xy, self.size[:, :2] / 2, self.yaw[:, None]], axis=1)
