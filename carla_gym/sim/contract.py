"""The simulator contract: what every backend takes and returns for one synchronous tick.

A backend is driven like a synchronous CARLA client: `reset(seed, options)` builds or re-seeds the
world and returns the first `Frame`; each `step(control)` applies a `Control`, advances the world by
one fixed time step and returns the `Frame` of that tick. Everything in a `Frame` is in CARLA's
conventions (see `perception.conventions`).
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.conventions import CLASS_IDS, CLASS_NAMES

#: Longest route a backend builds (metres). Route builders walk the lane graph until a route is this
#: long, so the bound keeps a mistaken value (say `inf`) from exhausting memory; an episode of 1000
#: steps at motorway speed covers well under a tenth of it.
MAX_ROUTE_LENGTH = 50_000.0
# Metres along the route where scenarios (the env's pedestrian_crossings, crossing drives) send a pedestrian
# across the road: the embedded backend's reset option crossing_m, drawn from this range.
CROSSING_M = (10.0, 40.0)

# Defaults shared by the env's config and every backend's own config, written only here: a backend made
# directly (`make_backend`) sees the same camera and route as the env's worlds.
#: Camera (height, width) in pixels.
DEFAULT_CAMERA_SIZE: tuple[int, int] = (128, 256)
#: Metres of random route per episode: the autopilot drives it in well under a 1000-step episode, red
#: lights included.
DEFAULT_ROUTE_LENGTH = 200.0
#: Horizontal camera field of view, degrees.
DEFAULT_FOV = 90.0
#: Simulated seconds per synchronous tick.
DEFAULT_FIXED_DELTA_SECONDS = 0.1
#: Camera position on the ego in metres from the vehicle centre: (x forward, y right, z up).
DEFAULT_CAMERA_LOCATION: tuple[float, float, float] = (1.6, 0.0, 1.4)


def check_route_length(value: Any, name: str = "route_length") -> float:
    """`value` as a route length in metres: a finite number in (0, MAX_ROUTE_LENGTH], else a ValueError naming `name`."""
    try:
        length = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of metres, got {value!r}") from None
    if not (math.isfinite(length) and 0.0 < length <= MAX_ROUTE_LENGTH):
        raise ValueError(f"{name} must be a finite number of metres in (0, {MAX_ROUTE_LENGTH:g}], got {value!r}")
    return length


def check_image_size(value: Any, name: str = "size") -> tuple[int, int]:
    """`value` as an image (height, width) of two positive integers, else a ValueError naming `name`.

    Strings ("128x256") and sequences of another length are errors rather than being read character
    by character or truncated.
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be (height, width), two positive integers, got {value!r}")
    dims = []
    for v in value:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer, float, np.floating))
            or not float(v).is_integer()
            or v < 1
        ):
            raise ValueError(f"{name} must be (height, width), two positive integers, got {value!r}")
        dims.append(int(v))
    return dims[0], dims[1]


@dataclass(frozen=True)
class Control:
    """Vehicle control for one tick, as in `carla.VehicleControl`: steer in [-1, 1], throttle and brake in [0, 1]."""

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0

    def __post_init__(self) -> None:
        for name, low in (("steer", -1.0), ("throttle", 0.0), ("brake", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
                raise ValueError(f"Control.{name} must be a finite number, got {value!r}")
            if not low <= value <= 1.0:
                raise ValueError(f"Control.{name} must lie in [{low:g}, 1], got {value!r}")
            object.__setattr__(self, name, float(value))


class EventKind(str, enum.Enum):
    """What happened to the ego vehicle during a tick."""

    COLLISION = "collision"
    LANE_INVASION = "lane_invasion"
    OFF_ROAD = "off_road"
    RED_LIGHT = "red_light"


@dataclass(frozen=True)
class Event:
    """One event of a tick.

    For a collision, `other_class` is the 22-class id of the other party (`category` gives the
    CARLA leaderboard's grouping: pedestrian, vehicle or static) and `intensity` the impulse in N*s.
    For a lane invasion, `detail` names the crossed marking ("solid" or "dashed").
    """

    kind: EventKind
    other_class: int | None = None
    intensity: float = 0.0
    detail: str = ""

    @property
    def category(self) -> str | None:
        """The collision's leaderboard category: "pedestrian", "vehicle" or "static"; None for other events."""
        if self.kind is not EventKind.COLLISION:
            return None
        if self.other_class == CLASS_IDS["Pedestrian"]:
            return "pedestrian"
        if self.other_class == CLASS_IDS["Vehicles"]:
            return "vehicle"
        return "static"

    def __str__(self) -> str:
        if self.kind is EventKind.COLLISION:
            other = CLASS_NAMES[self.other_class] if self.other_class is not None else "unknown"
            return f"collision with {other} ({self.intensity:.1f} N*s)"
        return f"{self.kind.value}{' (' + self.detail + ')' if self.detail else ''}"


@dataclass(frozen=True)
class Route:
    """The ego's route as seen at one tick.

    `waypoints` are the next route points, (N, 2) metres in the ego vehicle's frame (x forward,
    y right), spaced `spacing` metres apart along the route; `distance_left` is what remains in
    metres and `length` the route's total length.
    """

    waypoints: np.ndarray
    distance_left: float
    length: float
    spacing: float = 2.0

    @property
    def completion(self) -> float:
        """Share of the route driven, in [0, 1]."""
        return 1.0 if self.length <= 0 else float(np.clip(1.0 - self.distance_left / self.length, 0.0, 1.0))


@dataclass(frozen=True)
class Hazards:
    """What the ego must slow down for, as distances in metres ahead along its path (inf: none).

    The env's speed target uses them (like the CARLA leaderboard's expert, it brakes for a lead
    vehicle or pedestrian in its lane and for a red light's stop line).
    """

    lead: float = math.inf  # nearest vehicle or pedestrian in the ego's lane corridor
    red_light: float = math.inf  # stop line of a red or yellow light that applies to the ego


@dataclass
class Frame:
    """Everything one synchronized tick produces.

    Images are (H, W, ...) NumPy arrays: `rgb` uint8 RGB, `semantic` uint8 22-class ids, `depth`
    float32 planar metres (the 1000 m far plane for sky). `camera_to_world` and `transform` (the
    ego vehicle's) are 4x4 matrices equal to `carla.Transform.get_matrix()`; `intrinsics` is the
    3x3 K of the camera.
    """

    rgb: np.ndarray
    semantic: np.ndarray
    depth: np.ndarray
    camera_to_world: np.ndarray
    intrinsics: np.ndarray
    frame: int
    timestamp: float
    speed: float
    transform: np.ndarray
    route: Route
    events: list[Event] = field(default_factory=list)
    hazards: Hazards = field(default_factory=Hazards)

    def __post_init__(self) -> None:
        h, w = self.rgb.shape[:2]
        if self.rgb.shape != (h, w, 3) or self.rgb.dtype != np.uint8:
            raise ValueError(f"Frame.rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.semantic.shape != (h, w) or self.semantic.dtype != np.uint8:
            raise ValueError(
                f"Frame.semantic must be ({h}, {w}) uint8, got {self.semantic.shape} {self.semantic.dtype}"
            )
        if self.depth.shape != (h, w) or self.depth.dtype != np.float32:
            raise ValueError(f"Frame.depth must be ({h}, {w}) float32, got {self.depth.shape} {self.depth.dtype}")
        for name in ("camera_to_world", "transform"):
            if np.shape(getattr(self, name)) != (4, 4):
                raise ValueError(f"Frame.{name} must be a 4x4 matrix, got shape {np.shape(getattr(self, name))}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the camera images."""
        return self.rgb.shape[0], self.rgb.shape[1]

    def has(self, kind: EventKind) -> bool:
        """Whether an event of this kind happened during the tick."""
        return any(e.kind is kind for e in self.events)


class SimulatorError(RuntimeError):
    """A backend fault during an episode (lost server, tick timeout); the env truncates the episode."""


class SimulatorBackend(abc.ABC):
    """Base class of the simulator backends: `reset`, `step`, `close`, and use as a context manager."""

    #: Name under which `make_backend` builds the backend.
    name: str = ""
    #: The backend's options: a dataclass whose fields are the keyword options of `make_backend`.
    Config: type = object

    #: Town names by split ("train", "val", "test"); a clip records the split of its town.
    SPLITS: dict[str, tuple[str, ...]] = {}
    #: Bumped when the backend's worlds change how they look, so cached recordings are not reused.
    WORLD_VERSION: int = 1
    #: The keys `reset(options=...)` takes.
    RESET_OPTIONS: tuple[str, ...] = ()

    @classmethod
    def towns(cls, split: str | None = None) -> tuple[str, ...]:
        """The backend's named towns, all of them or those of one split."""
        if split is None:
            return tuple(t for towns in cls.SPLITS.values() for t in towns)
        if split not in cls.SPLITS:
            raise ValueError(f"unknown split {split!r} for the {cls.name} backend; known: {', '.join(cls.SPLITS)}")
        return cls.SPLITS[split]

    @classmethod
    def split_of(cls, town: str) -> str | None:
        """The split a town belongs to, or None for a town outside the catalogue (a seed, say)."""
        return next((s for s, towns in cls.SPLITS.items() if town in towns), None)

    @abc.abstractmethod
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Frame:
        """Start a new episode (new route, traffic and weather drawn from `seed`) and return its first frame."""

    @abc.abstractmethod
    def step(self, control: Control) -> Frame:
        """Apply `control`, advance the world by one fixed time step and return that tick's frame."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything the backend holds (server actors, GL contexts); safe to call twice."""

    @property
    @abc.abstractmethod
    def fixed_delta_seconds(self) -> float:
        """Simulated seconds per `step`."""

    def __enter__(self) -> SimulatorBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "DEFAULT_CAMERA_LOCATION",
    "DEFAULT_CAMERA_SIZE",
    "DEFAULT_FIXED_DELTA_SECONDS",
    "DEFAULT_FOV",
    "DEFAULT_ROUTE_LENGTH",
    "MAX_ROUTE_LENGTH",
    "check_image_size",
    "check_route_length",
    "Control",
    "Event",
    "EventKind",
    "Frame",
    "Hazards",
    "Route",
    "SimulatorBackend",
    "SimulatorError",
]
