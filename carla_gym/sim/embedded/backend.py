"""EmbeddedBackend: the built-in driving world behind the simulator contract."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.conventions import intrinsics

from ..contract import (
    DEFAULT_CAMERA_LOCATION,
    DEFAULT_CAMERA_SIZE,
    DEFAULT_FIXED_DELTA_SECONDS,
    DEFAULT_FOV,
    DEFAULT_ROUTE_LENGTH,
    Control,
    Event,
    EventKind,
    Frame,
    Hazards,
    SimulatorBackend,
    check_image_size,
    check_route_length,
)
from ..route import RouteTracker
from .autopilot import LENGTH, WIDTH, Autopilot, Ego, RouteStops, yaw_matrix
from .events import EGO_MASS, EventDetector
from .lights import TrafficLights
from .pedestrians import Crowd
from .renderer import Renderer
from .towns import SPLITS, WORLD_VERSION, town_spec
from .vehicles import LaneTable, RouteLanes, Traffic, vehicle_points
from .weather import Weather, get_weather
from .world import World, build_world

RESET_OPTIONS = ("ego_pose", "weather", "route_length", "lead_m", "crossing_m")


def _route_metres(options: dict[str, Any], name: str, route_length: float) -> float | None:
    """The reset option `name` as metres along the route, inside (0, route_length); None when unset."""
    value = options.get(name)
    if value is None:
        return None
    try:
        metres = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"reset option {name} must be a number of metres, got {value!r}") from None
    if not 0.0 < metres < route_length:
        raise ValueError(f"reset option {name} must be in (0, route_length={route_length:g}) metres, got {value!r}")
    return metres


def _pose(value: Any) -> tuple[float, float, float]:
    """The reset option `ego_pose` as finite (x metres, y metres, yaw radians)."""
    try:
        x, y, yaw = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"reset option ego_pose must be three numbers (x, y, yaw), got {value!r}") from None
    if not all(math.isfinite(v) for v in (x, y, yaw)):
        raise ValueError(f"reset option ego_pose must be finite, got {value!r}")
    return x, y, yaw


@dataclass
class EmbeddedConfig:
    """Options of `make_backend("embedded", ...)`."""

    town: str | int = "grid_suburb"  # a named town (see SPLITS) or an int seed for a random town
    size: tuple[int, int] = DEFAULT_CAMERA_SIZE  # camera (height, width)
    fov: float = DEFAULT_FOV  # horizontal, degrees
    fixed_delta_seconds: float = DEFAULT_FIXED_DELTA_SECONDS
    seed: int | None = None  # seeds the episodes of resets called without a seed
    vehicles: int = 30  # NPC vehicles
    pedestrians: int = 40
    weather: str | None = None  # a preset name from weather.PRESETS; None draws one per episode seed
    render: bool = True  # False: frames carry 0x0 images (fast stepping, e.g. for autopilot rollouts)
    route_length: float = DEFAULT_ROUTE_LENGTH  # metres of random route per episode
    speed_limit: float | None = None  # m/s; None uses the town's
    camera_height: float = DEFAULT_CAMERA_LOCATION[2]
    camera_forward: float = DEFAULT_CAMERA_LOCATION[0]  # camera position ahead of the vehicle centre, metres
    num_waypoints: int = 10
    waypoint_spacing: float = 2.0

    def __post_init__(self) -> None:
        self.size = check_image_size(self.size, "size")
        self.route_length = check_route_length(self.route_length, "route_length")
        if self.fixed_delta_seconds <= 0:
            raise ValueError(f"fixed_delta_seconds must be positive, got {self.fixed_delta_seconds}")
        if self.vehicles < 0 or self.pedestrians < 0:
            raise ValueError("vehicles and pedestrians must be >= 0")
        town_spec(self.town)  # fail early on an unknown town name
        get_weather(self.weather, np.random.default_rng(0))


class EmbeddedBackend(SimulatorBackend):
    """A procedural town rendered with OpenGL: CARLA's sensors and formats, no server.

    `reset(seed)` draws the ego's route, the traffic, the pedestrians and the weather from `seed`;
    the same town and seed give the same frames, byte for byte, on one machine.
    `reset(options={"ego_pose": (x, y, yaw), "weather": name, "route_length": metres})` places the
    ego (its route stays the drawn one), fixes the weather or the route length; `"lead_m": metres`
    moves one of the drawn vehicles onto the route that far along it from its start (ahead of the ego
    unless `ego_pose` moves it), headed the route's way: a vehicle to follow and close in on (none
    without traffic); `"crossing_m": metres` sends one of the drawn pedestrians across the road that far
    along the route, from the kerb on the ego's side and away from any zebra crossing (none without
    pedestrians, or where that road has no sidewalk).

    Events per tick: a collision (other party's class id; the ego stops where it was, and the
    event repeats while it stays in contact), a lane invasion when the ego's centre enters a
    solid or dashed marking, off-road on every tick its centre is off the road surface, and a
    red light when it crosses a stop line whose light is red. `autopilot_control()` gives the
    autopilot's Control for the current state; `Frame.hazards` its lead and red-light gaps.

    The OpenGL context is made on the first rendered frame (`reset`), by the process that renders:
    a backend constructed before a fork renders in the forked child, and a missing GL driver is
    reported (RenderError) by the first `reset`, not by the constructor.
    """

    name = "embedded"
    Config = EmbeddedConfig
    RESET_OPTIONS = RESET_OPTIONS
    SPLITS = SPLITS
    WORLD_VERSION = WORLD_VERSION

    def __init__(self, config: EmbeddedConfig | None = None) -> None:
        self.config = config or EmbeddedConfig()
        cfg = self.config
        self.world: World = build_world(cfg.town)
        self.town_name = self.world.spec.name
        self.table = LaneTable(self.world.network)
        self.renderer: Renderer | None = Renderer(self.world, cfg.size, cfg.fov) if cfg.render else None
        self.K = intrinsics(cfg.size[1], cfg.size[0], cfg.fov)
        self.camera_offset = yaw_matrix(cfg.camera_forward, 0.0, cfg.camera_height, 0.0)
        self.speed_limit = cfg.speed_limit or self.world.spec.speed_limit
        self._seed_rng = np.random.default_rng(cfg.seed)
        self._ready = False
        self._empty = (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.float32))
        heads = self.world.scenery.lights
        self._lamp_base = np.array([[*h.position, h.yaw] for h in heads]).reshape(-1, 4)
        self._lamp_junction = np.array([h.junction for h in heads], dtype=np.int64)
        self._lamp_approach = np.array([h.approach for h in heads], dtype=np.int64)

    @property
    def fixed_delta_seconds(self) -> float:
        return self.config.fixed_delta_seconds

    # ------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Frame:
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: {', '.join(RESET_OPTIONS)}")
        if seed is None:
            seed = int(self._seed_rng.integers(0, 2**31 - 1))
        self.episode_seed = int(seed)
        rng = np.random.default_rng(self.episode_seed)
        net = self.world.network
        self.weather: Weather = get_weather(options.get("weather", self.config.weather), rng)
        if self.renderer is not None:
            self.renderer.set_weather(self.weather)
        self.lights = TrafficLights(net, rng)
        self.events = EventDetector(self.world.ground, self.world.scenery.obstacles, self.lights)
        route_length = check_route_length(
            options.get("route_length", self.config.route_length), "reset option route_length"
        )
        lead_m = _route_metres(options, "lead_m", route_length)
        crossing_m = _route_metres(options, "crossing_m", route_length)
        points, stops, route_lanes = self._random_route(rng, route_length)
        if "ego_pose" in options:
            x, y, yaw = _pose(options["ego_pose"])
        else:
            d = points[1] - points[0]
            x, y, yaw = float(points[0][0]), float(points[0][1]), math.atan2(d[1], d[0])
        self.ego = Ego(x, y, yaw, 0.0)
        self.tracker = RouteTracker(points, self.config.num_waypoints, self.config.waypoint_spacing)
        self.stops = stops
        self.traffic = Traffic(
            net, self.table, self.lights, self.config.vehicles, self.speed_limit, rng, avoid=self.ego.xy
        )
        if lead_m is not None and len(self.traffic):
            self.traffic.place(0, *route_lanes.at(lead_m))
        self.crowd = Crowd(net, self.config.pedestrians, rng)
        if crossing_m is not None and len(self.crowd):
            self._send_across(route_lanes, crossing_m)
        self.autopilot = Autopilot(self.speed_limit)
        self.frame_number = 0
        self.time = 0.0
        self.events.reset(self.ego.xy)
        self._ready = True
        return self._frame([])

    def _send_across(self, route: RouteLanes, distance: float) -> None:
        """Start pedestrian 0 across the road `distance` metres along the route (past the junction, when
        that point is in one), from the kerb on the ego's side."""
        lane, s, rest = route.at(distance)
        lanes = self.world.network.lanes
        if lanes[lane].road < 0 and rest:
            lane, s = rest[0], min(2.0, lanes[rest[0]].length)
        if lanes[lane].road >= 0:
            xy, _ = self.table.pose(np.array([lane]), np.array([s]))
            self.crowd.send_across(0, lanes[lane].road, xy[0])

    def _random_route(self, rng: np.random.Generator, length: float) -> tuple[np.ndarray, RouteStops, RouteLanes]:
        """A random drive through the lane graph from a random road lane, at least `length` metres: its points,
        stop lines and lanes."""
        t = self.table
        candidates = np.flatnonzero(t.is_road & (t.length > 25.0))
        lane = int(rng.choice(candidates))
        s0 = float(rng.uniform(2.0, t.length[lane] - 20.0))
        lanes_ = self.world.network.lanes
        cum = lanes_[lane].cum
        keep = cum > s0
        pts = [np.concatenate([t.pose(np.array([lane]), np.array([s0]))[0], lanes_[lane].points[keep]])]
        route = [lane]
        total = float(t.length[lane] - s0)
        stop_s, stop_lane = [], []
        if self.lights.lane_signal[lane]:
            stop_s.append(self.lights.lane_stop_s[lane] - s0)
            stop_lane.append(lane)
        while total < length:
            nxt = t.successors[lane]
            lane = int(nxt[int(rng.integers(0, len(nxt)))])
            if self.lights.lane_signal[lane]:
                stop_s.append(total + self.lights.lane_stop_s[lane])
                stop_lane.append(lane)
            pts.append(lanes_[lane].points[1:])
            route.append(lane)
            total += float(t.length[lane])
        points = np.concatenate(pts)
        # Route arc lengths of stops measured on the concatenated polyline (tiny joins differ).
        stops = RouteStops(np.array(stop_s), np.array(stop_lane, dtype=np.int64))
        return points, stops, RouteLanes(tuple(route), s0, tuple(float(t.length[i]) for i in route))

    # ------------------------------------------------------------------------------------------
    def autopilot_control(self, late_brake: float | None = None) -> Control:
        """What the autopilot would do now: follow the route, keep distance, stop at red lights
        (`late_brake`: see `Autopilot.control`)."""
        self._check_ready()
        return self.autopilot.control(self.ego, self.tracker, self._hazards, late_brake)

    def _compute_hazards(self) -> tuple[float, float, float]:
        tv = self.traffic
        pts, rad = vehicle_points(tv.xy, tv.yaw, tv.size[:, 0], tv.size[:, 1] / 2)
        along = np.repeat(tv.v * np.cos(tv.yaw - self.ego.yaw), 3)
        obstacles = np.concatenate(
            [
                np.concatenate([pts, rad[:, None], along[:, None]], axis=1),
                np.concatenate(
                    [self.crowd.xy, np.full((len(self.crowd), 1), 0.3), np.zeros((len(self.crowd), 1))], axis=1
                ),
            ]
        )
        return self.autopilot.hazards(
            self.ego, self.tracker, self.stops, lambda lanes: self.lights.lane_state(lanes, self.time), obstacles
        )

    def step(self, control: Control) -> Frame:
        self._check_ready()
        if not isinstance(control, Control):
            raise TypeError(f"step() takes a Control, got {type(control).__name__}")
        dt = self.config.fixed_delta_seconds
        prev = Ego(self.ego.x, self.ego.y, self.ego.yaw, self.ego.speed)
        self.ego.step(control, dt)
        self.time += dt
        self.frame_number += 1
        self.crowd.step(dt, np.concatenate([self.traffic.xy, self.ego.xy[None]]))
        ego_state = np.array([self.ego.x, self.ego.y, self.ego.yaw, LENGTH, WIDTH])
        self.traffic.step(dt, self.time, ego_state, self.ego.speed, self.crowd.xy)
        events: list[Event] = []
        hit = self.events.collision(self.ego.box(), self.traffic.boxes(), self.crowd.xy)
        if hit is not None:
            events.append(Event(EventKind.COLLISION, other_class=hit, intensity=EGO_MASS * prev.speed))
            self.ego = Ego(prev.x, prev.y, prev.yaw, 0.0)  # a crash stops the ego where it was
        events += self.events.move_events(prev.xy, self.ego.xy, self.time)
        return self._frame(events)

    def _frame(self, events: list[Event]) -> Frame:
        ego_m = self.ego.matrix()
        cam = ego_m @ self.camera_offset
        if self.renderer is not None:
            actors = self.traffic.instances()
            actors["pedestrian"] = self.crowd.instances()
            actors["lamp"] = self._lamp_instances()
            rgb, labels, depth = self.renderer.render(cam, actors)
        else:
            rgb, labels, depth = self._empty
        route = self.tracker.update(ego_m)
        self._hazards = self._compute_hazards()
        return Frame(
            rgb=rgb,
            semantic=labels,
            depth=depth,
            camera_to_world=cam,
            intrinsics=self.K,
            frame=self.frame_number,
            timestamp=self.time,
            speed=self.ego.speed,
            transform=ego_m,
            route=route,
            events=events,
            hazards=Hazards(lead=self._hazards[0], red_light=self._hazards[2]),
        )

    def _lamp_instances(self) -> np.ndarray:
        """Traffic-light lamps coloured by state (green low, yellow middle, red high on the head)."""
        n = len(self._lamp_base)
        state = self.lights.state(self._lamp_junction, self._lamp_approach, self.time)
        colours = np.array([(0.1, 1.0, 0.3), (1.0, 0.75, 0.05), (1.0, 0.1, 0.05)])[state].reshape(n, 3)
        pos = self._lamp_base.copy()
        pos[:, 2] += np.array([-0.3, 0.0, 0.3])[state]
        return np.concatenate(
            [pos, np.full((n, 1), 0.05), np.full((n, 2), 0.25), colours, np.full((n, 1), 18.0)], axis=1
        ).astype(np.float32)

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("call reset() before step() or autopilot_control()")

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.release()
            self.renderer = None
        self._ready = False
