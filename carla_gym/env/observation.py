"""The observation of `CarlaPerception-v0`: its spaces and how perception outputs become one.

| key | shape | dtype, range | meaning |
| --- | --- | --- | --- |
| `semantic` | (6, h, w) | uint8, 0..255 | probability x 255 of each class group (`SEMANTIC_GROUPS`), area-averaged to the observation size |
| `depth` | (1, h, w) | uint8, 0..255 | `round(255 * log(1 + d) / log(1 + 100))` of metric depth d (nearest surface per cell), 255 at 100 m and beyond; back to metres: `101 ** (v / 255) - 1` (`depth_metres`) |
| `ego_motion` | (6,) | float32, clipped to +-10 m, +-pi | camera motion since the last step, `(x, y, z, roll, pitch, yaw)` in m and rad (zeros after reset) |
| `state` | (7,) | float32 | speed / 10 m/s, last steer, last acceleration, signal speed / 10 m/s (cruise speed, slowing for a red light; not for other road users, which the agent must perceive), lateral offset from the route (m, + right), heading error (rad, + right), red-light distance / 50 m (1 when none within 50 m) |
| `route` | (20,) | float32 | the next 10 route waypoints in the ego frame (x forward, y right), in units of 20 m, flat: `x1, y1, x2, y2, ...` |
| `road_users` | (2,) | float32, 0..1 | only with the env option `road_user_gaps`: metres from the front bumper to the nearest vehicle and pedestrian in the route's corridor, / 40 m (1 when none), read off `semantic` and `depth` (`carla_gym.env.road_user_gaps`) |

The image keys (`IMAGE_KEYS`) are uint8 0..255 and channel-first, the layout Stable-Baselines3 and
Gymnasium wrappers take for images: SB3's `check_env` accepts them, `VecFrameStack` stacks them
along the channels, and its `CombinedExtractor` runs `NatureCNN` on them (which needs
`obs_size` of at least `NATURE_CNN_MIN_SIZE` in both directions). The vector keys (`VECTOR_KEYS`, and
`OPTIONAL_VECTOR_KEYS` where the env's options add them) are flat float32 vectors, which
`VecFrameStack` stacks end to end and `check_env` takes without a warning.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from perception.conventions import CLASS_IDS, NUM_CLASSES

from ..sim.contract import Frame, check_image_size

# Class groups that matter for driving; Sky and Unlabeled belong to none.
SEMANTIC_GROUPS: dict[str, tuple[str, ...]] = {
    "road": ("Road",),
    "road_line": ("RoadLine",),
    "sidewalk": ("Sidewalk", "Ground"),
    "vehicle": ("Vehicles",),
    "pedestrian": ("Pedestrian",),
    "obstacle": (
        "Building",
        "Fence",
        "Other",
        "Pole",
        "Vegetation",
        "Wall",
        "TrafficSign",
        "Bridge",
        "RailTrack",
        "GuardRail",
        "TrafficLight",
        "Static",
        "Dynamic",
        "Water",
    ),
}
IMAGE_KEYS = ("semantic", "depth")
VECTOR_KEYS = ("ego_motion", "state", "route")
OPTIONAL_VECTOR_KEYS = ("road_users",)  # only with the env option of that name
DEPTH_RANGE_M = 100.0
# The smallest image NatureCNN (SB3's default image network) takes: 8x8 stride-4, 4x4 stride-2 and
# 3x3 stride-1 convolutions leave nothing of a side under 36 pixels.
NATURE_CNN_MIN_SIZE = 36
NUM_WAYPOINTS = 10
WAYPOINT_SCALE_M = 20.0
STATE_SPEED_SCALE = 10.0  # m/s per unit of the `state` vector's speed and signal speed
RED_LIGHT_RANGE_M = 50.0
# Bounds of the vector observations (values are clipped into them): 10 m and pi per step of
# ego-motion, 100 m/s, 20 m of lateral offset, 200 m of waypoints.
EGO_MOTION_BOUND = np.array([10.0] * 3 + [math.pi] * 3, dtype=np.float32)
STATE_LOW = np.array([0.0, -1.0, -1.0, 0.0, -20.0, -math.pi, 0.0], dtype=np.float32)
STATE_HIGH = np.array([10.0, 1.0, 1.0, 10.0, 20.0, math.pi, 1.0], dtype=np.float32)
# Where `state` holds the last action (steer, acceleration).
STATE_LAST_ACTION = (1, 2)
ROUTE_BOUND = 10.0


def group_matrix() -> np.ndarray:
    """(groups, 22) 0/1 matrix that sums class probabilities into the groups."""
    m = np.zeros((len(SEMANTIC_GROUPS), NUM_CLASSES), dtype=np.float32)
    for g, names in enumerate(SEMANTIC_GROUPS.values()):
        m[g, [CLASS_IDS[n] for n in names]] = 1.0
    return m


def check_sizes(camera_size: Any, obs_size: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Validated (camera_size, obs_size): each two positive integers, and the observation no larger
    than the camera (it is pooled down from the camera's images, never blown up)."""
    camera = check_image_size(camera_size, "camera_size")
    obs = check_image_size(obs_size, "obs_size")
    if obs[0] > camera[0] or obs[1] > camera[1]:
        raise ValueError(f"obs_size {obs} must not exceed camera_size {camera} in height or width")
    return camera, obs


def observation_space(obs_size: tuple[int, int], road_user_gaps: bool = False) -> gym.spaces.Dict:
    """The Dict space for observations of height x width `obs_size`, with the `road_users` key when `road_user_gaps`."""
    h, w = obs_size
    optional = {"road_users": gym.spaces.Box(0.0, 1.0, (2,), np.float32)} if road_user_gaps else {}
    return gym.spaces.Dict(
        {
            "semantic": gym.spaces.Box(0, 255, (len(SEMANTIC_GROUPS), h, w), np.uint8),
            "depth": gym.spaces.Box(0, 255, (1, h, w), np.uint8),
            "ego_motion": gym.spaces.Box(-EGO_MOTION_BOUND, EGO_MOTION_BOUND, dtype=np.float32),
            "state": gym.spaces.Box(STATE_LOW, STATE_HIGH, dtype=np.float32),
            "route": gym.spaces.Box(-ROUTE_BOUND, ROUTE_BOUND, (NUM_WAYPOINTS * 2,), np.float32),
            **optional,
        }
    )


def assemble_observation(
    perceived: dict[str, np.ndarray], row: int, vectors: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One world's observation: row `row` of a batched perception output plus its `state` and `route`."""
    return {
        "semantic": perceived["semantic"][row],
        "depth": perceived["depth"][row],
        "ego_motion": perceived["ego_motion"][row].astype(np.float32),
        **vectors,
    }


def normalise_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metric depth to uint8 codes 0..255 on a log scale (255 at DEPTH_RANGE_M and beyond).

    The log scale keeps near obstacles sharp: one code is about 1.8% of `1 + d`, i.e. 0.2 m at
    10 m and 1.8 m at 100 m. uint8 makes depth an image for SB3 and Gymnasium, like `semantic`.
    """
    scaled = 255.0 * np.log1p(np.clip(depth_m, 0.0, DEPTH_RANGE_M)) / math.log1p(DEPTH_RANGE_M)
    return np.rint(scaled).astype(np.uint8)


def depth_metres(codes: np.ndarray) -> np.ndarray:
    """The metric depth (float32 m) that `depth` observation codes stand for: the inverse of `normalise_depth`, up to its rounding."""
    return (np.expm1(np.asarray(codes, np.float64) / 255.0 * math.log1p(DEPTH_RANGE_M))).astype(np.float32)


def route_geometry(frame: Frame) -> tuple[float, float]:
    """Lateral offset (m, positive when the route lies to the right) and heading error (rad) of the route.

    Taken from the line through the first two route waypoints in the ego frame, extended back to
    the ego (x = 0): works the same for any backend.
    """
    wp = frame.route.waypoints
    if len(wp) < 2:
        return 0.0, 0.0
    (x0, y0), (x1, y1) = wp[0], wp[1]
    heading = math.atan2(y1 - y0, x1 - x0)
    dx = x1 - x0
    offset = y0 - x0 * (y1 - y0) / dx if abs(dx) > 1e-6 else y0
    return float(offset), float(heading)


def vehicle_state(frame: Frame, last_action: np.ndarray, target_speed: float) -> np.ndarray:
    """The `state` vector (see the module docstring)."""
    offset, heading = route_geometry(frame)
    red = min(frame.hazards.red_light, RED_LIGHT_RANGE_M) / RED_LIGHT_RANGE_M
    state = np.array(
        [
            frame.speed / STATE_SPEED_SCALE,
            last_action[0],
            last_action[1],
            target_speed / STATE_SPEED_SCALE,
            offset,
            heading,
            red,
        ],
        dtype=np.float32,
    )
    return np.clip(state, STATE_LOW, STATE_HIGH)


def route_waypoints(frame: Frame) -> np.ndarray:
    """The `route` vector: the next NUM_WAYPOINTS waypoints (repeating the last one near the route's end), flattened."""
    wp = np.asarray(frame.route.waypoints, dtype=np.float32)
    out = np.zeros((NUM_WAYPOINTS, 2), dtype=np.float32)
    if len(wp):
        n = min(len(wp), NUM_WAYPOINTS)
        out[:n] = wp[:n]
        out[n:] = wp[n - 1]
    return np.clip(out / WAYPOINT_SCALE_M, -ROUTE_BOUND, ROUTE_BOUND).reshape(-1)
