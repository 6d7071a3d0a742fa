"""The ego vehicle (a kinematic bicycle driven by Control) and its autopilot.

The autopilot is what CARLA's would do on a route: pure-pursuit steering towards a look-ahead
point on the route, a desired speed from the speed limit and the curvature ahead, and IDM
distance keeping to whatever is on the route ahead (vehicles, pedestrians, a red light's stop
line). Like an agent on CARLA's leaderboard it drives through the route's end rather than
stopping before it (the env counts the route completed 2 m before its end), and brakes only
once past the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..contract import Control
from .lights import GREEN, YELLOW
from .vehicles import B_COMF, idm

WHEELBASE = 2.85
MAX_STEER = math.radians(35.0)
LENGTH, WIDTH = 4.7, 1.9
THROTTLE_ACCEL, BRAKE_DECEL = 3.5, 8.0  # m/s^2 at full throttle / brake
MAX_SPEED = 30.0


def drag(speed: float) -> float:
    """The ego's deceleration (m/s^2) from rolling resistance and air drag at `speed` (m/s)."""
    return 0.1 + 0.0008 * speed * speed


@dataclass
class Ego:
    """Kinematic bicycle state about the vehicle centre: position (m), yaw (rad), speed (m/s)."""

    x: float
    y: float
    yaw: float
    speed: float = 0.0

    def step(self, control: Control, dt: float) -> None:
        """Apply a control for dt seconds: positive steer turns right (towards +y when heading +x)."""
        accel = THROTTLE_ACCEL * control.throttle - BRAKE_DECEL * control.brake - drag(self.speed)
        self.speed = float(np.clip(self.speed + accel * dt, 0.0, MAX_SPEED))
        delta = control.steer * MAX_STEER
        beta = math.atan(0.5 * math.tan(delta))  # slip angle at the centre of mass
        self.x += self.speed * math.cos(self.yaw + beta) * dt
        self.y += self.speed * math.sin(self.yaw + beta) * dt
        self.yaw += self.speed / WHEELBASE * math.cos(beta) * math.tan(delta) * dt
        self.yaw = (self.yaw + math.pi) % (2 * math.pi) - math.pi

    @property
    def xy(self) -> np.ndarray:
        return np.array([self.x, self.y])

    def box(self) -> np.ndarray:
        """[cx, cy, half_len, half_wid, yaw] for collision checks."""
        return np.array([self.x, self.y, LENGTH / 2, WIDTH / 2, self.yaw])

    def matrix(self) -> np.ndarray:
        """The ego's 4x4 actor-to-world matrix (carla.Transform.get_matrix(), yaw only)."""
        return yaw_matrix(self.x, self.y, 0.0, self.yaw)


def yaw_matrix(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """`pose6_to_matrix((x, y, z, 0, 0, yaw))` without the tensor round trip."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]])


@dataclass
class RouteStops:
    """Signalised stop lines on the ego's route: arc length along the route, and their lane."""

    s: np.ndarray
    lane: np.ndarray


class Autopilot:
    """Pure pursuit + IDM on the ego's route."""

    def __init__(self, speed_limit: float) -> None:
        self.speed_limit = speed_limit

    def hazards(
        self, ego: Ego, tracker, stops: RouteStops, light_state, obstacles: np.ndarray
    ) -> tuple[float, float, float]:
        """What is ahead on the route: (lead gap m, lead speed along the route m/s, red-light gap m).

        Gaps run from the ego's front bumper; inf when nothing is within 40 m (lead) or 60 m (light).
        `tracker` is the route's RouteTracker; `light_state(lanes)` gives the light state of lanes;
        `obstacles` is (M, 4) [x, y, radius, speed along the ego's heading] of vehicles and pedestrians.
        A yellow light counts when the ego can still stop before its line.
        """
        v, progress = ego.speed, tracker.progress
        lead, lead_speed, red = math.inf, 0.0, math.inf
        if len(obstacles):
            path = tracker.point_at(progress + np.arange(0.0, 40.0, 1.0))
            dist = np.linalg.norm(obstacles[:, None, :2] - path[None], axis=-1)  # (M, 40)
            k = np.argmin(dist, axis=1)
            near = dist[np.arange(len(obstacles)), k] < WIDTH / 2 + obstacles[:, 2] + 0.4
            near &= k > 0  # not beside or behind us
            if near.any():
                g = k[near] * 1.0 - LENGTH / 2 - obstacles[near, 2]
                j = int(np.argmin(g))
                lead, lead_speed = float(g[j]), float(obstacles[near][j, 3])
        if len(stops.s):
            ahead_stops = (stops.s > progress - 0.5) & (stops.s < progress + 60.0)
            idx = np.flatnonzero(ahead_stops)
            if len(idx):
                for i, st in zip(idx, light_state(stops.lane[idx]), strict=False):
                    to_stop = stops.s[i] - progress - LENGTH / 2
                    if st == GREEN or to_stop < -0.3:
                        continue
                    if st == YELLOW and v * v / (2 * B_COMF * 1.5) > to_stop:
                        continue
                    red = max(to_stop, 0.0)
                    break
        return lead, lead_speed, red

    def control(
        self, ego: Ego, tracker, hazards: tuple[float, float, float], late_brake: float | None = None
    ) -> Control:
        """The control for this tick, given `hazards()` of the current state.

        `late_brake` None keeps IDM distance to road users ahead. A margin in metres instead ignores them
        until a full brake would only just stop that far short of the nearest, then brakes fully: the late
        braking of a learning policy, which recordings need (vehicles seen close while closing in) and the
        comfortable distance keeping never shows. Red lights are kept either way.
        """
        v = ego.speed
        progress = tracker.progress
        # Steering: pure pursuit on a look-ahead point of the route (rear-axle form).
        look = float(np.clip(2.5 + 0.5 * v, 4.0, 12.0))
        target = tracker.point_at(np.array([progress + look]))[0]
        rear = ego.xy - WHEELBASE / 2 * np.array([math.cos(ego.yaw), math.sin(ego.yaw)])
        d = target - rear
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        lx, ly = d[0] * c + d[1] * s, -d[0] * s + d[1] * c
        ld2 = max(lx * lx + ly * ly, 1e-6)
        delta = math.atan(2.0 * WHEELBASE * ly / ld2)
        steer = float(np.clip(delta / MAX_STEER, -1.0, 1.0))

        # Desired speed: the limit, lowered where the route bends ahead (up to its end).
        ahead = tracker.point_at(np.arange(progress, min(progress + 30.0, tracker.length), 2.0))
        seg = np.diff(ahead, axis=0)
        head = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
        curv = np.abs(np.diff(head)) / 2.0
        kappa = float(curv.max()) if len(curv) else 0.0
        v0 = max(min(self.speed_limit, math.sqrt(2.2 / max(kappa, 1e-4))), 2.5)

        # Distance keeping: the nearer of lead and red light.
        lead, lead_speed, red = hazards
        if late_brake is not None and lead < red:
            if lead <= v * v / (2 * BRAKE_DECEL) + late_brake:
                return Control(steer=steer, throttle=0.0, brake=1.0)
            lead = math.inf
        gap, dv = lead, v - lead_speed
        if red < gap:
            gap, dv = max(red, 0.05), v
        finite = math.isfinite(gap)
        acc = float(
            idm(np.array([v]), np.array([v0]), np.array([gap if finite else 1e6]), np.array([dv if finite else 0.0]))[0]
        )
        if progress >= tracker.length:
            return Control(steer=steer, throttle=0.0, brake=1.0)
        acc += drag(v)
        if acc >= 0:
            return Control(steer=steer, throttle=float(np.clip(acc / THROTTLE_ACCEL, 0.0, 1.0)), brake=0.0)
        return Control(steer=steer, throttle=0.0, brake=float(np.clip(-acc / BRAKE_DECEL, 0.0, 1.0)))
