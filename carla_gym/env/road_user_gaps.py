"""How far ahead along the route the nearest vehicle and pedestrian are, read off an observation.

A policy sees perception as small maps (40x80 by default): a pedestrian stepping into the lane 8 m
ahead covers a few cells, and whether those cells lie in the ego's path or on the kerb is a matter of a
cell or two. The autopilot it imitates brakes on exactly that distinction, and a policy fitted to its
labels learns the rare hard stops poorly from the maps alone. `road_user_gaps` makes the distinction
explicit from what perception already gives: every cell the semantic map assigns to a road-user group
is placed in the ego frame by its (min-pooled, so nearest-surface) depth and the camera's geometry, and
the gap is the distance from the front bumper to the nearest such point within a corridor about the
route's waypoints. It reads only the observation (model or ground-truth perception alike), never the
simulator's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.conventions import intrinsics

from ..sim.contract import DEFAULT_CAMERA_LOCATION, DEFAULT_FOV
from .observation import NUM_WAYPOINTS, SEMANTIC_GROUPS, WAYPOINT_SCALE_M, depth_metres

ROAD_USER_GROUPS = ("vehicle", "pedestrian")


@dataclass(frozen=True)
class RoadUserGapConfig:
    """What counts as a road user in the ego's path.

    `half_width_m`: the corridor's half width about the route (the autopilot's test: half the ego's
    width, 0.95 m, plus a pedestrian's radius and a margin). `range_m`: gaps are measured up to this far
    from the bumper (the autopilot's look-ahead); nothing nearer gives `range_m`. `min_probability`: a
    cell counts for a group when the group's probability there is at least this. `bumper_m`: the front
    bumper ahead of the vehicle centre (the embedded ego and CARLA's Lincoln MKZ: 2.35 m). `min_cells`: the
    gap is the distance within which at least this many of a group's cells lie (1: the nearest cell), so
    that a lone cell (a far road user's edge taking a near pole's depth) does not count alone.
    `min_height_m`: a cell counts only where its point stands at least this high above the road plane the ego
    drives on (0: every cell, the default). A road user stands up from the road; a patch of road painted as one
    has the road's depth and lies on the plane. The height is taken at the cell's lower edge, where its min-pooled
    (nearest-surface) depth lies on a patch of road, so that road cells come out at about 0 m. The test is only as
    good as perception's depth on the road users close ahead, and the emergency brake leaves it off: the bundled
    weights put a pedestrian a few metres ahead at about the road's depth behind it (the experiment log, "The
    emergency brake's false alarms").
    """

    half_width_m: float = 1.6
    range_m: float = 40.0
    min_probability: float = 0.3
    bumper_m: float = 2.35
    min_cells: int = 1
    min_height_m: float = 0.0

    def __post_init__(self) -> None:
        if self.min_cells < 1:
            raise ValueError(f"min_cells must be >= 1, got {self.min_cells}")
        if self.min_height_m < 0:
            raise ValueError(f"min_height_m must be >= 0, got {self.min_height_m}")


def route_corridor(route: np.ndarray, range_m: float, spacing_m: float = 0.5) -> np.ndarray:
    """(N, P, 2) points every `spacing_m` along the route in the ego frame (x forward, y right), from the
    ego through the `route` observation's waypoints and on along the last waypoints' direction to at least
    `range_m` ahead: the `route` vector covers 20 m, the corridor reaches as far as the gaps are measured."""
    wp = route.reshape(len(route), NUM_WAYPOINTS, 2).astype(np.float64) * WAYPOINT_SCALE_M
    direction = wp[:, -1] - wp[:, -2]
    length = np.linalg.norm(direction, axis=-1, keepdims=True)
    direction = np.where(length > 1e-6, direction / np.maximum(length, 1e-6), [1.0, 0.0])
    extension = wp[:, -1:] + direction[:, None] * np.arange(2.0, range_m + 2.0, 2.0)[None, :, None]
    polyline = np.concatenate([np.zeros((len(route), 1, 2)), wp, extension], axis=1)
    t = np.arange(0.0, 1.0, spacing_m / 2.0)  # waypoints lie about 2 m apart
    points = polyline[:, :-1, None] + (polyline[:, 1:, None] - polyline[:, :-1, None]) * t[None, None, :, None]
    return points.reshape(len(route), -1, 2)


def road_user_gaps(
    semantic: np.ndarray,
    depth: np.ndarray,
    route: np.ndarray,
    camera_location: tuple[float, float, float] = DEFAULT_CAMERA_LOCATION,
    fov: float = DEFAULT_FOV,
    config: RoadUserGapConfig = RoadUserGapConfig(),
) -> np.ndarray:
    """(N, 2) metres from the front bumper to the nearest vehicle and pedestrian in the route's corridor
    (`config.range_m` where there is none), for a batch of observations' `semantic` (N, G, h, w) uint8,
    `depth` (N, 1, h, w) uint8 codes and `route` (N, 2 * NUM_WAYPOINTS) vectors, as the env gives them.

    The camera looks along the ego's x axis from `camera_location` (x forward, y right, z up, metres
    from the vehicle centre) with horizontal field of view `fov` degrees, as the env's default camera."""
    n, _, h, w = semantic.shape
    k = intrinsics(w, h, fov)
    forward = depth_metres(depth[:, 0]).astype(np.float64)  # planar depth: distance along the camera's axis
    right = (np.arange(w) + 0.5 - k[0, 2]) / k[0, 0] * forward
    cells = np.stack([forward + camera_location[0], right + camera_location[1]], axis=-1).reshape(n, -1, 2)
    corridor = route_corridor(route, config.range_m)
    groups = [list(SEMANTIC_GROUPS).index(g) for g in ROAD_USER_GROUPS]
    present = semantic[:, groups].reshape(n, len(groups), -1) >= 255.0 * config.min_probability
    if config.min_height_m > 0:
        height = camera_location[2] - (np.arange(h)[:, None] + 1.0 - k[1, 2]) / k[1, 1] * forward
        present &= (height >= config.min_height_m).reshape(n, 1, -1)
    gaps = np.full((n, len(groups)), config.range_m)
    for i in range(n):
        candidates = present[i].any(axis=0)
        ahead = cells[i, :, 0] - config.bumper_m
        candidates &= (ahead > -0.5) & (ahead < config.range_m)
        if not candidates.any():
            continue
        points = cells[i, candidates]
        offset = np.sqrt(((points[:, None] - corridor[i][None]) ** 2).sum(-1)).min(axis=1)
        in_path = offset < config.half_width_m
        for j in range(len(groups)):
            hit = in_path & present[i, j, candidates]
            if hit.sum() >= config.min_cells:
                nearest = np.partition(ahead[candidates][hit], config.min_cells - 1)[config.min_cells - 1]
                gaps[i, j] = max(float(nearest), 0.0)
    return gaps.astype(np.float32)


def road_user_observation(
    obs: dict[str, np.ndarray],
    camera_location: tuple[float, float, float] = DEFAULT_CAMERA_LOCATION,
    fov: float = DEFAULT_FOV,
) -> np.ndarray:
    """The `road_users` key of one observation (its `semantic`, `depth` and `route`): the gaps over their range."""
    config = RoadUserGapConfig()
    gaps = road_user_gaps(obs["semantic"][None], obs["depth"][None], obs["route"][None], camera_location, fov, config)
    return gaps[0] / np.float32(config.range_m)
