"""The `carla` backend: the simulator contract on a real CARLA 0.9.16 server.

The `carla` client package is imported here only, when the backend is built, so the rest of the
project installs and runs without it. Several backends can drive several servers in parallel:
give each its own `port` (a CARLA server also uses port+1 and port+2, so space servers 4 apart:
2000, 2004, 2008, ...); the traffic manager port defaults to port+6000, which keeps those apart too.
"""

from __future__ import annotations

import math
import time
import types
import weakref
from dataclasses import dataclass
from typing import Any, cast

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
    SimulatorError,
    check_image_size,
    check_route_length,
)
from ..route import RouteTracker
from .conversions import (
    collision_event,
    depth_from_image,
    labels_from_image,
    lane_invasion_events,
    matrix_of,
    rgb_from_image,
)
from .hazards import STOP_RANGE_M, in_ego_frame, lead_distance, red_light_distance
from .probe import probe_server
from .sensor_queues import EventQueue, FrameQueue
from .session import Probe, ServerSession

CAMERAS = {
    "rgb": "sensor.camera.rgb",
    "semantic": "sensor.camera.semantic_segmentation",
    "depth": "sensor.camera.depth",
}
WEATHERS = (
    "ClearNoon",
    "CloudyNoon",
    "WetNoon",
    "SoftRainNoon",
    "ClearSunset",
    "CloudySunset",
    "WetCloudySunset",
    "HardRainNoon",
)


@dataclass
class CarlaConfig:
    """Options of the `carla` backend (keyword arguments of `make_backend("carla", ...)`)."""

    host: str = "localhost"
    port: int = 2000
    tm_port: int | None = None  # default port + 6000
    timeout: float = 10.0  # seconds for connecting, each tick and each sensor
    town: str | None = None  # e.g. "Town02"; None keeps the loaded map
    size: tuple[int, int] = DEFAULT_CAMERA_SIZE  # camera (height, width)
    fov: float = DEFAULT_FOV
    fixed_delta_seconds: float = DEFAULT_FIXED_DELTA_SECONDS
    camera_location: tuple[float, float, float] = DEFAULT_CAMERA_LOCATION  # on the ego, metres (x forward, z up)
    ego_blueprint: str = "vehicle.tesla.model3"
    vehicles: int = 30
    walkers: int = 20
    weather: str | None = "random"  # a carla.WeatherParameters preset, "random" (drawn by seed) or None
    route_length: float = DEFAULT_ROUTE_LENGTH
    autopilot: bool = False  # the traffic manager drives the ego (for recording clips)
    seed: int | None = None
    reconnect_attempts: int = 3
    reconnect_backoff: float = 2.0  # seconds, doubled after each failed attempt
    spawn_attempts: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"CarlaConfig.host must be a non-empty host name or address, got {self.host!r}")
        if not _is_int(self.port) or not 1 <= self.port <= 65535 - 2:
            raise ValueError(
                f"CarlaConfig.port must be an integer in 1..65533 (the server also uses port+1 and "
                f"port+2), got {self.port!r}"
            )
        if self.tm_port is not None and (not _is_int(self.tm_port) or not 1 <= self.tm_port <= 65535):
            raise ValueError(f"CarlaConfig.tm_port must be an integer in 1..65535 or None, got {self.tm_port!r}")
        if self.tm_port is None and self.port + 6000 > 65535:
            raise ValueError(
                f"CarlaConfig.port {self.port}: the default traffic manager port port+6000 exceeds 65535; pass tm_port="
            )
        if not _is_number(self.timeout) or not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"CarlaConfig.timeout must be a finite number of seconds > 0, got {self.timeout!r}")
        self.size = check_image_size(self.size, "CarlaConfig.size")
        self.route_length = check_route_length(self.route_length, "CarlaConfig.route_length")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _import_carla() -> Any:
    try:
        import carla
    except ImportError:
        raise ImportError(
            "the carla backend needs the CARLA 0.9.16 client: pip install 'carla-perception-gym[carla]' "
            "(Linux and Windows; CARLA publishes no macOS wheels)"
        ) from None
    return carla


def _half_extents(actor: Any) -> tuple[float, float]:
    """An actor's bounding-box half length and half width in metres; zeros (centre to centre) without one."""
    box = getattr(actor, "bounding_box", None)
    return (float(box.extent.x), float(box.extent.y)) if box is not None else (0.0, 0.0)


class CarlaBackend(SimulatorBackend):
    """A synchronous CARLA client: ego, traffic, walkers and aligned RGB / semantic / depth cameras."""

    name = "carla"
    Config = CarlaConfig
    RESET_OPTIONS = ("autopilot", "route_length")
    # The seed project's split of CARLA's towns.
    SPLITS = {
        "train": ("Town01", "Town03", "Town04", "Town05", "Town06", "Town07"),
        "val": ("Town10HD",),
        "test": ("Town02",),
    }

    def __init__(self, config: CarlaConfig | None = None, carla_module: Any = None, probe: Probe | None = None) -> None:
        """Connect to the server of `config`. `carla_module` stands in for the `carla` package (tests);
        `probe` checks host:port before the client goes there, by default `probe_server` when the client
        is the real `carla` package (which aborts the process on a port where no CARLA server listens)."""
        self.config = config = config or CarlaConfig()
        self._carla = carla_module or _import_carla()
        real_client = isinstance(self._carla, types.ModuleType) and self._carla.__name__ == "carla"
        self._probe = probe if probe is not None else (probe_server if real_client else None)
        self._tm_port = config.tm_port if config.tm_port is not None else config.port + 6000
        self._rng = np.random.default_rng(config.seed)
        self._cameras = {name: FrameQueue(name) for name in CAMERAS}
        self._collisions = EventQueue()
        self._invasions = EventQueue()
        self._ego: Any = None
        self._route: RouteTracker | None = None
        self._lights_run: set[int] = set()
        self._stop_points: dict[
            int, np.ndarray
        ] = {}  # traffic light id -> world matrices of its stop waypoints (static per map)
        self._autopilot = False
        self._lost = False
        self._session = self._open_session()

    # -- connection ----------------------------------------------------------------------------
    def _open_session(self) -> ServerSession:
        c = self.config
        session = ServerSession(self._carla, c.host, c.port, c.timeout, self._probe)
        self._finalizer = weakref.finalize(self, session.close)
        try:
            session.open_world(c.town, c.fixed_delta_seconds, self._tm_port, c.seed)
        except RuntimeError as err:
            session.close()
            raise SimulatorError(f"could not set up the world on CARLA server {session.where}: {err}") from err
        return session

    def _reconnect(self) -> None:
        """After a lost server: drop the old session and connect again, with bounded retries and back-off."""
        self._finalizer()
        self._stop_points.clear()  # the new session's world may run another map, with other lights
        delay = self.config.reconnect_backoff
        for attempt in range(self.config.reconnect_attempts):
            try:
                self._session = self._open_session()
                self._lost = False
                return
            except (ConnectionError, SimulatorError) as err:
                last = err
                if attempt + 1 < self.config.reconnect_attempts:
                    time.sleep(delay)
                    delay *= 2
        raise SimulatorError(
            f"lost the CARLA server and could not reconnect after {self.config.reconnect_attempts} attempts: {last}"
        )

    @property
    def fixed_delta_seconds(self) -> float:
        return self.config.fixed_delta_seconds

    @property
    def world(self) -> Any:
        """The `carla.World` this backend drives (for users who need more of CARLA's API)."""
        return self._session.world

    # -- episodes ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Frame:
        """Respawn the ego (at a spawn point drawn from `seed`), traffic and sensors, plan a route, tick once."""
        if self._session.closed and not self._lost:
            raise RuntimeError("this CARLA backend is closed")
        options = dict(options or {})
        unknown = set(options) - set(self.RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; known: {', '.join(self.RESET_OPTIONS)}")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self._lost:
            self._reconnect()
        self._end_episode()
        try:
            self._spawn_episode(options)
            return self._tick_and_read()
        except BaseException:
            self._end_episode()
            raise

    def step(self, control: Control) -> Frame:
        """Apply `control` to the ego (unless the traffic manager drives it), tick, read the aligned sensors."""
        if self._ego is None:
            raise RuntimeError("call reset() before step()")
        if not self._autopilot:
            self._ego.apply_control(
                self._carla.VehicleControl(throttle=control.throttle, steer=control.steer, brake=control.brake)
            )
        return self._tick_and_read()

    def close(self) -> None:
        """Destroy every spawned actor and restore the server's settings; safe to call twice."""
        self._ego = None
        self._finalizer()

    def _end_episode(self) -> None:
        self._session.destroy_actors()
        self._ego = None
        queues: tuple[FrameQueue | EventQueue, ...] = (*self._cameras.values(), self._collisions, self._invasions)
        for queue in queues:
            queue.clear()
        self._lights_run.clear()

    def _spawn_episode(self, options: dict[str, Any]) -> None:
        carla, c, session = self._carla, self.config, self._session
        world = session.world
        if c.weather:
            name = WEATHERS[self._rng.integers(len(WEATHERS))] if c.weather == "random" else c.weather
            if not hasattr(carla.WeatherParameters, name):
                raise ValueError(f"unknown CARLA weather preset {name!r}; see carla.WeatherParameters")
            world.set_weather(getattr(carla.WeatherParameters, name))
        library = world.get_blueprint_library()
        points = list(world.get_map().get_spawn_points())
        order = [points[i] for i in self._rng.permutation(len(points))]
        ego_bp = library.find(c.ego_blueprint)
        ego_bp.set_attribute("role_name", "hero")
        for i, spawn_point in enumerate(order[: c.spawn_attempts]):
            self._ego = world.try_spawn_actor(ego_bp, spawn_point)
            if self._ego is not None:
                session.track(self._ego)
                del order[i]
                break
        else:
            raise SimulatorError(
                f"could not spawn the ego at any of {min(len(order), c.spawn_attempts)} spawn points (all occupied?)"
            )
        self._spawn_sensors(library)
        self._spawn_vehicles(library, order)
        self._spawn_walkers(library)
        self._autopilot = bool(options.get("autopilot", c.autopilot))
        if self._autopilot:
            self._ego.set_autopilot(True, self._tm_port)
        self._route = RouteTracker(
            self._plan_route(
                check_route_length(options.get("route_length", c.route_length), "reset option route_length")
            )
        )

    def _spawn_sensors(self, library: Any) -> None:
        carla, c, session = self._carla, self.config, self._session
        mount = carla.Transform(carla.Location(x=c.camera_location[0], y=c.camera_location[1], z=c.camera_location[2]))
        height, width = c.size
        for name, blueprint in CAMERAS.items():
            bp = library.find(blueprint)
            bp.set_attribute("image_size_x", str(width))
            bp.set_attribute("image_size_y", str(height))
            bp.set_attribute("fov", str(c.fov))
            camera = session.track(session.world.spawn_actor(bp, mount, attach_to=self._ego))
            camera.listen(self._cameras[name].put)
        for blueprint, queue in (
            ("sensor.other.collision", self._collisions),
            ("sensor.other.lane_invasion", self._invasions),
        ):
            sensor = session.track(
                session.world.spawn_actor(library.find(blueprint), carla.Transform(), attach_to=self._ego)
            )
            sensor.listen(queue.put)

    def _spawn_vehicles(self, library: Any, free_points: list[Any]) -> None:
        """Spawn NPC vehicles in batches on the traffic manager's autopilot; occupied points are skipped, not retried recursively."""
        carla, session = self._carla, self._session
        blueprints = (
            [bp for bp in library.filter("vehicle.*") if int(bp.get_attribute("number_of_wheels")) == 4]
            if self.config.vehicles
            else []
        )
        wanted, cursor = self.config.vehicles, 0
        while wanted > 0 and cursor < len(free_points):
            chunk = free_points[cursor : cursor + wanted]
            cursor += len(chunk)
            batch = [
                carla.command.SpawnActor(blueprints[self._rng.integers(len(blueprints))], point).then(
                    carla.command.SetAutopilot(carla.command.FutureActor, True, self._tm_port)
                )
                for point in chunk
            ]
            for response in session.client.apply_batch_sync(batch, True):
                if not response.error:
                    session.actor_ids.append(response.actor_id)
                    wanted -= 1

    def _spawn_walkers(self, library: Any) -> None:
        """Spawn walkers on the navigation mesh, each led by an AI controller towards random destinations."""
        carla, session = self._carla, self._session
        if self.config.walkers <= 0:
            return
        world = session.world
        walker_bps = list(library.filter("walker.pedestrian.*"))
        batch = []
        for _ in range(self.config.walkers):
            location = world.get_random_location_from_navigation()
            if location is not None:
                batch.append(
                    carla.command.SpawnActor(walker_bps[self._rng.integers(len(walker_bps))], carla.Transform(location))
                )
        walker_ids = [r.actor_id for r in session.client.apply_batch_sync(batch, True) if not r.error]
        session.actor_ids.extend(walker_ids)
        controller_bp = library.find("controller.ai.walker")
        for walker_id in walker_ids:
            controller = session.track(
                world.spawn_actor(controller_bp, carla.Transform(), attach_to=world.get_actor(walker_id))
            )
            controller.start()
            controller.go_to_location(world.get_random_location_from_navigation())
            controller.set_max_speed(1.0 + 0.6 * float(self._rng.random()))

    def _plan_route(self, length: float, spacing: float = 2.0) -> np.ndarray:
        """A route of about `length` metres along the map's driving lanes from the ego, branching at random."""
        carla_map = self._session.world.get_map()
        waypoint = carla_map.get_waypoint(self._ego.get_transform().location)
        points = [waypoint]
        for _ in range(int(length / spacing)):
            following = waypoint.next(spacing)
            if not following:
                break
            waypoint = following[self._rng.integers(len(following))]
            points.append(waypoint)
        if len(points) < 2:
            raise SimulatorError("the ego's lane has no waypoints ahead to plan a route")
        return np.array([[p.transform.location.x, p.transform.location.y] for p in points])

    # -- ticks ---------------------------------------------------------------------------------
    def _tick_and_read(self) -> Frame:
        c, world = self.config, self._session.world
        try:
            frame_id = world.tick(c.timeout)
            images = {name: queue.get(frame_id, c.timeout) for name, queue in self._cameras.items()}
            ego_matrix = matrix_of(self._ego.get_transform())
            velocity = self._ego.get_velocity()
            events = self._events(frame_id, ego_matrix)
            route = cast(RouteTracker, self._route).update(ego_matrix)  # planned by reset
            hazards = self._hazards(ego_matrix)
        except RuntimeError as err:  # carla raises RuntimeError on a timeout or a lost connection
            self._lost = True  # the next reset reconnects
            raise SimulatorError(f"CARLA server {self._session.where}: {err}") from err
        height, width = c.size
        return Frame(
            rgb=rgb_from_image(images["rgb"]),
            semantic=labels_from_image(images["semantic"]),
            depth=depth_from_image(images["depth"]),
            camera_to_world=matrix_of(images["rgb"].transform),
            intrinsics=intrinsics(width, height, c.fov),
            frame=int(frame_id),
            timestamp=float(images["rgb"].timestamp),
            speed=float(np.sqrt(velocity.x**2 + velocity.y**2 + velocity.z**2)),
            transform=ego_matrix,
            route=route,
            events=events,
            hazards=hazards,
        )

    def _events(self, frame_id: int, ego_matrix: np.ndarray) -> list[Event]:
        carla = self._carla
        events = [collision_event(e) for e in self._collisions.take(frame_id)]
        for invasion in self._invasions.take(frame_id):
            events.extend(lane_invasion_events(invasion))
        carla_map = self._session.world.get_map()
        location = self._ego.get_transform().location
        if carla_map.get_waypoint(location, project_to_road=False, lane_type=carla.LaneType.Driving) is None:
            events.append(Event(EventKind.OFF_ROAD))
        # Running a red light: entering a junction while the ego's light shows red (once per light).
        if self._ego.is_at_traffic_light():
            light = self._ego.get_traffic_light()
            if (
                light is not None
                and light.state == carla.TrafficLightState.Red
                and light.id not in self._lights_run
                and carla_map.get_waypoint(location).is_junction
            ):
                self._lights_run.add(light.id)
                events.append(Event(EventKind.RED_LIGHT, detail=f"traffic light {light.id}"))
        return events

    def _hazards(self, ego_matrix: np.ndarray) -> Hazards:
        """This tick's lead and red-light gaps (see `hazards.py`); the lane corridor follows the route ahead.

        `red_light` looks ahead like the embedded backend's rather than waiting for CARLA's
        `is_at_traffic_light()` (true only inside a light's trigger volume, a few metres before its stop
        line, too late to slow down): every red or yellow light of the world offers its stop waypoints
        (one per lane it controls, fetched once per light and map), and the nearest one on the route's
        lane corridor within `STOP_RANGE_M`, facing the ego's way, gives the gap.
        """
        carla = self._carla
        actors = self._session.world.get_actors()
        tracker = cast(RouteTracker, self._route)  # planned by reset
        path = tracker.ahead(ego_matrix, math.ceil(STOP_RANGE_M / tracker.spacing))  # past Route.waypoints' 20 m
        others = [
            a
            for pattern in ("vehicle.*", "walker.pedestrian.*")
            for a in actors.filter(pattern)
            if a.id != self._ego.id
        ]
        centres, yaws = in_ego_frame(ego_matrix, np.array([matrix_of(a.get_transform()) for a in others]))
        ego_extents = _half_extents(self._ego)
        lead = lead_distance(centres, yaws, np.array([_half_extents(a) for a in others]), ego_extents, path)
        stopping = (carla.TrafficLightState.Red, carla.TrafficLightState.Yellow)
        stops = [
            self._stop_matrices(light)
            for light in actors.filter("traffic.traffic_light*")
            if light.get_state() in stopping
        ]
        red_light = math.inf
        if stops:
            stop_points, stop_yaws = in_ego_frame(ego_matrix, np.concatenate(stops))
            red_light = red_light_distance(stop_points, stop_yaws, ego_extents, path)
        return Hazards(lead=lead, red_light=red_light)

    def _stop_matrices(self, light: Any) -> np.ndarray:
        """World matrices (N, 4, 4) of a traffic light's stop waypoints, cached: they do not move."""
        if light.id not in self._stop_points:
            self._stop_points[light.id] = np.array(
                [matrix_of(w.transform) for w in light.get_stop_waypoints()]
            ).reshape(-1, 4, 4)
        return self._stop_points[light.id]
