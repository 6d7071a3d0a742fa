"""FAKE of the small part of the `carla` client API that the CARLA backend uses. Not a simulator.

It lets the backend's logic (frame matching, spawning, cleanup, settings, failures) be tested
without a CARLA server. Value types (Transform, Location, Rotation, VehicleControl, WorldSettings,
LaneMarkingType) are the real `carla` package's where it is installed. Images carry their frame
number in their pixels so tests can check that the backend paired each tick with its own images.
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
import types

import numpy as np

from perception.conventions import encode_carla_depth, pose6_to_matrix

try:
    import carla as real_carla
except ImportError:  # macOS: no CARLA wheels; minimal stand-ins for the value types
    real_carla = None

if real_carla is not None:
    Location, Rotation, Transform = real_carla.Location, real_carla.Rotation, real_carla.Transform
    VehicleControl, WorldSettings = real_carla.VehicleControl, real_carla.WorldSettings
    LaneMarkingType = real_carla.LaneMarkingType
else:

    class Location:
        def __init__(self, x=0.0, y=0.0, z=0.0):
            self.x, self.y, self.z = x, y, z

    class Rotation:
        def __init__(self, pitch=0.0, yaw=0.0, roll=0.0):
            self.pitch, self.yaw, self.roll = pitch, yaw, roll

    class Transform:
        def __init__(self, location=None, rotation=None):
            self.location, self.rotation = location or Location(), rotation or Rotation()

        def get_matrix(self):
            r = self.rotation
            return pose6_to_matrix(
                np.array([self.location.x, self.location.y, self.location.z, *np.radians([r.roll, r.pitch, r.yaw])])
            ).tolist()

    class VehicleControl:
        def __init__(self, throttle=0.0, steer=0.0, brake=0.0):
            self.throttle, self.steer, self.brake = throttle, steer, brake

    class WorldSettings:
        def __init__(self):
            self.synchronous_mode, self.fixed_delta_seconds = False, None
            self.substepping, self.max_substep_delta_time, self.max_substeps = True, 0.01, 10

    class LaneMarkingType:
        Solid, Broken, SolidSolid, Curb = "Solid", "Broken", "SolidSolid", "Curb"


TrafficLightState = types.SimpleNamespace(Red="Red", Yellow="Yellow", Green="Green")
HALF_EXTENTS = {"vehicle.": (2.4, 1.0, 0.8), "walker.": (0.25, 0.25, 0.9)}  # bounding-box extents by type prefix

SETTINGS_FIELDS = ("synchronous_mode", "fixed_delta_seconds", "substepping", "max_substep_delta_time", "max_substeps")


def copy_settings(settings):
    """A copy of a WorldSettings (the real one cannot be copied with `copy`)."""
    out = WorldSettings()
    for name in SETTINGS_FIELDS:
        setattr(out, name, getattr(settings, name))
    return out


SEMANTIC_TAG_PATTERN = np.arange(29, dtype=np.uint8)  # CARLA 0.9.14+ tags repeated along each row
DEPTH_M = 12.5


class FakeServer:
    """One pretend CARLA server; tests flip its switches to misbehave."""

    def __init__(self, host="localhost", port=2000, version="0.9.16"):
        self.address = (host, port)
        self.version = version
        self.running = True
        self.hang = False  # ticks time out
        self.late_sensors = False  # camera data arrives from another thread, after the tick returns
        self.resend_stale = False  # every tick also re-delivers the previous frame's image, after the new one
        self.frame = 100
        self.map_name = "Carla/Maps/Town01"
        self.loaded = []
        self.settings = WorldSettings()
        self.tm_sync = False
        self.tm_seed = None
        self.actors: dict[int, FakeActor] = {}
        self.destroyed: list[int] = []
        self.pending_collisions: list = []
        self.traffic_light: FakeTrafficLight | None = None  # the light whose trigger volume the ego is in, if any
        self.traffic_lights: list[FakeTrafficLight] = []  # the map's lights, listed by world.get_actors()
        self.fail_spawn_after: int | None = None  # spawn_actor raises after this many successes
        self._ids = itertools.count(1)
        self._spawned = 0
        self.threads: list[threading.Thread] = []

    def check(self):
        if not self.running:
            raise RuntimeError(
                "time-out of 10000ms while waiting for the simulator, make sure the simulator is ready and connected to {}:{}".format(
                    *self.address
                )
            )

    def spawn(self, blueprint, transform, parent=None):
        self.check()
        if self.fail_spawn_after is not None and self._spawned >= self.fail_spawn_after:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        if not blueprint.id.startswith(("sensor.", "controller.")) and parent is None:
            for other in self.actors.values():
                if other.parent is None and not other.type_id.startswith("controller."):
                    if (
                        abs(other.location.x - transform.location.x) < 2
                        and abs(other.location.y - transform.location.y) < 2
                    ):
                        return None
        self._spawned += 1
        actor = FakeActor(self, next(self._ids), blueprint, transform, parent)
        self.actors[actor.id] = actor
        return actor

    def tick(self):
        self.check()
        if self.hang:
            raise RuntimeError("time-out of 10000ms while waiting for the simulator")
        self.frame += 1
        frame = self.frame
        for actor in list(self.actors.values()):
            actor.advance()
        deliveries = []
        for actor in list(self.actors.values()):
            if actor.callback is None:
                continue
            if actor.type_id.startswith("sensor.camera"):
                deliveries.append((actor.callback, actor.image(frame)))
                if self.resend_stale and frame > 101:
                    deliveries.append((actor.callback, actor.image(frame - 1)))
            elif actor.type_id == "sensor.other.collision":
                for other in self.pending_collisions:
                    deliveries.append(
                        (
                            actor.callback,
                            types.SimpleNamespace(
                                frame=frame, other_actor=other, normal_impulse=Location(x=300.0, y=400.0, z=0.0)
                            ),
                        )
                    )
        self.pending_collisions = []
        if self.late_sensors:

            def deliver_later(items=deliveries):
                threading.Event().wait(0.05)
                for cb, data in reversed(items):  # out of order, too
                    cb(data)

            thread = threading.Thread(target=deliver_later, daemon=True)
            thread.start()
            self.threads.append(thread)
        else:
            for cb, data in deliveries:
                cb(data)
        return frame


class FakeBlueprint:
    def __init__(self, id):
        self.id = id
        self.attributes = {"number_of_wheels": "4"}

    def set_attribute(self, key, value):
        self.attributes[key] = value

    def get_attribute(self, key):
        return self.attributes[key]


class FakeActor:
    def __init__(self, server, id, blueprint, transform, parent):
        self.server, self.id, self.type_id = server, id, blueprint.id
        self.attributes = dict(blueprint.attributes)
        self.location = Location(x=transform.location.x, y=transform.location.y, z=transform.location.z)
        r = transform.rotation
        self.rotation = Rotation(pitch=r.pitch, yaw=r.yaw, roll=r.roll)
        extent = next((e for prefix, e in HALF_EXTENTS.items() if self.type_id.startswith(prefix)), (0.0, 0.0, 0.0))
        self.bounding_box = types.SimpleNamespace(extent=Location(x=extent[0], y=extent[1], z=extent[2]))
        self.parent = parent
        self.callback = None
        self.speed = 0.0
        self.autopilot = False
        self.controls = []
        self.semantic_tags = (
            [14] if self.type_id.startswith("vehicle.") else [12] if self.type_id.startswith("walker.") else [3]
        )
        self.controller_calls = []

    # vehicles
    def apply_control(self, control):
        self.controls.append(control)
        self.speed = 10.0 * control.throttle

    def set_autopilot(self, enabled, tm_port=8000):
        self.autopilot = (enabled, tm_port)

    def advance(self):
        if self.parent is None:
            self.location = Location(x=self.location.x + self.speed * 0.1, y=self.location.y, z=self.location.z)

    def get_transform(self):
        if self.parent is not None:
            p = self.parent.get_transform().location
            return Transform(Location(x=p.x + self.location.x, y=p.y + self.location.y, z=p.z + self.location.z))
        r = self.rotation
        return Transform(
            Location(x=self.location.x, y=self.location.y, z=self.location.z),
            Rotation(pitch=r.pitch, yaw=r.yaw, roll=r.roll),
        )

    def get_velocity(self):
        return Location(x=self.speed, y=0.0, z=0.0)

    def is_at_traffic_light(self):
        return self.server.traffic_light is not None

    def get_traffic_light(self):
        return self.server.traffic_light

    # sensors
    @property
    def is_listening(self):
        return self.callback is not None

    def listen(self, callback):
        self.callback = callback

    def stop(self):
        self.callback = None
        self.controller_calls.append("stop")

    def image(self, frame):
        h, w = int(self.attributes["image_size_y"]), int(self.attributes["image_size_x"])
        bgra = np.zeros((h, w, 4), np.uint8)
        bgra[..., 3] = 255
        if self.type_id == "sensor.camera.rgb":
            bgra[..., 0] = frame % 256  # blue carries the frame number
            bgra[..., 2] = 200
        elif self.type_id == "sensor.camera.semantic_segmentation":
            bgra[..., 2] = np.resize(SEMANTIC_TAG_PATTERN, w)[None, :]
        else:
            bgra[..., :3] = encode_carla_depth(np.full((h, w), DEPTH_M))[..., ::-1]
        return types.SimpleNamespace(
            frame=frame,
            timestamp=frame * 0.1,
            width=w,
            height=h,
            raw_data=bgra.tobytes(),
            transform=self.get_transform(),
        )

    # walker controllers
    def start(self):
        self.controller_calls.append("start")

    def go_to_location(self, location):
        self.controller_calls.append("go_to_location")

    def set_max_speed(self, speed):
        self.controller_calls.append("set_max_speed")

    def destroy(self):
        self.server.check()
        if self.server.actors.pop(self.id, None) is not None:
            self.server.destroyed.append(self.id)
        return True


class FakeWaypoint:
    def __init__(self, x, y, yaw=0.0):
        self.transform = Transform(Location(x=x, y=y, z=0.0), Rotation(yaw=yaw))
        self.is_junction = False

    def next(self, distance):
        return [FakeWaypoint(self.transform.location.x + distance, self.transform.location.y)]


class FakeTrafficLight:
    """A light in `state` whose stop waypoints lie at the given (x, y[, yaw in degrees]) points."""

    type_id = "traffic.traffic_light"

    def __init__(self, state, stop_points, id=900):
        self.id, self.state, self.stop_points = id, state, stop_points
        self.stop_waypoint_calls = 0

    def get_state(self):
        return self.state

    def get_stop_waypoints(self):
        self.stop_waypoint_calls += 1
        return [FakeWaypoint(*point) for point in self.stop_points]


class FakeActorList(list):
    def filter(self, pattern):
        return FakeActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))


class FakeMap:
    def __init__(self, server):
        self.server = server

    @property
    def name(self):
        return self.server.map_name

    def get_spawn_points(self):
        return [Transform(Location(x=50.0 * i, y=0.0, z=0.5)) for i in range(12)]

    def get_waypoint(self, location, project_to_road=True, lane_type=None):
        if not project_to_road and abs(location.y) > 10:
            return None
        return FakeWaypoint(location.x, 0.0)


class FakeBlueprintLibrary:
    IDS = [
        "vehicle.tesla.model3",
        "vehicle.audi.a2",
        "walker.pedestrian.0001",
        "controller.ai.walker",
        "sensor.camera.rgb",
        "sensor.camera.semantic_segmentation",
        "sensor.camera.depth",
        "sensor.other.collision",
        "sensor.other.lane_invasion",
    ]

    def find(self, id):
        if id not in self.IDS:
            raise IndexError(f"blueprint {id!r} not found")
        return FakeBlueprint(id)

    def filter(self, pattern):
        return [FakeBlueprint(i) for i in self.IDS if fnmatch.fnmatch(i, pattern)]


class FakeWorld:
    def __init__(self, server):
        self.server = server
        self.weather = None
        self.pedestrians_seed = None

    def get_map(self):
        self.server.check()
        return FakeMap(self.server)

    def get_settings(self):
        self.server.check()
        return copy_settings(self.server.settings)

    def apply_settings(self, settings):
        self.server.check()
        self.server.settings = copy_settings(settings)
        return self.server.frame

    def tick(self, seconds=10.0):
        return self.server.tick()

    def get_blueprint_library(self):
        return FakeBlueprintLibrary()

    def try_spawn_actor(self, blueprint, transform, attach_to=None):
        return self.server.spawn(blueprint, transform, attach_to)

    def spawn_actor(self, blueprint, transform, attach_to=None):
        actor = self.server.spawn(blueprint, transform, attach_to)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def get_actor(self, actor_id):
        return self.server.actors.get(actor_id)

    def get_actors(self):
        self.server.check()
        return FakeActorList([*self.server.actors.values(), *self.server.traffic_lights])

    def set_weather(self, weather):
        self.weather = weather

    def set_pedestrians_seed(self, seed):
        self.pedestrians_seed = seed

    def get_random_location_from_navigation(self):
        return Location(x=float(np.random.uniform(0, 500)), y=15.0, z=0.5)


class FakeTrafficManager:
    def __init__(self, server, port):
        self.server, self.port = server, port

    def set_synchronous_mode(self, enabled):
        self.server.check()
        self.server.tm_sync = enabled

    def set_random_device_seed(self, seed):
        self.server.tm_seed = seed


class Response:
    def __init__(self, actor_id=0, error=""):
        self.actor_id, self.error = actor_id, error


class SpawnActor:
    def __init__(self, blueprint, transform, parent=None):
        self.blueprint, self.transform, self.parent = blueprint, transform, parent
        self.then_commands = []

    def then(self, command):
        self.then_commands.append(command)
        return self


class SetAutopilot:
    def __init__(self, actor, enabled, tm_port=8000):
        self.enabled, self.tm_port = enabled, tm_port


class DestroyActor:
    def __init__(self, actor_id):
        self.actor_id = actor_id


def make_fake_carla(servers: dict[tuple[str, int], FakeServer]) -> types.SimpleNamespace:
    """A module-like namespace standing in for `carla`, backed by the given servers."""

    class Client:
        def __init__(self, host, port, worker_threads=0):
            self.server = servers.get((host, port))
            self.address = (host, port)

        def set_timeout(self, seconds):
            self.timeout = seconds

        def _server(self):
            if self.server is None or not self.server.running:
                raise RuntimeError(
                    f"time-out of {int(self.timeout * 1000)}ms while waiting for the simulator, "
                    f"make sure the simulator is ready and connected to {self.address[0]}:{self.address[1]}"
                )
            return self.server

        def get_server_version(self):
            return self._server().version

        def get_client_version(self):
            return "0.9.16"

        def get_world(self):
            return FakeWorld(self._server())

        def load_world(self, town):
            server = self._server()
            server.map_name = f"Carla/Maps/{town}"
            server.loaded.append(town)
            return FakeWorld(server)

        def get_trafficmanager(self, port=8000):
            return FakeTrafficManager(self._server(), port)

        def apply_batch_sync(self, commands, do_tick=False):
            server = self._server()
            responses = []
            for command in commands:
                if isinstance(command, DestroyActor):
                    actor = server.actors.get(command.actor_id)
                    responses.append(
                        Response(command.actor_id) if actor and actor.destroy() else Response(error="not found")
                    )
                    continue
                try:
                    actor = server.spawn(command.blueprint, command.transform)
                except RuntimeError as err:
                    responses.append(Response(error=str(err)))
                    continue
                if actor is None:
                    responses.append(Response(error="Spawn failed because of collision at spawn position"))
                    continue
                for then in command.then_commands:
                    actor.set_autopilot(then.enabled, then.tm_port)
                responses.append(Response(actor.id))
            if do_tick:
                server.tick()
            return responses

    weather = types.SimpleNamespace(
        **{
            name: name
            for name in (
                "ClearNoon",
                "CloudyNoon",
                "WetNoon",
                "SoftRainNoon",
                "ClearSunset",
                "CloudySunset",
                "WetCloudySunset",
                "HardRainNoon",
            )
        }
    )
    return types.SimpleNamespace(
        Client=Client,
        Location=Location,
        Rotation=Rotation,
        Transform=Transform,
        VehicleControl=VehicleControl,
        WeatherParameters=weather,
        LaneType=types.SimpleNamespace(Driving="Driving"),
        TrafficLightState=TrafficLightState,
        command=types.SimpleNamespace(
            SpawnActor=SpawnActor, SetAutopilot=SetAutopilot, DestroyActor=DestroyActor, FutureActor=object()
        ),
    )
