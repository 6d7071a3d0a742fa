"""`EnvConfig`: every option of `CarlaPerception-v0`, written once with its default and its checks.

The single env, the vector env, its worker processes and the agent command lines all build their
worlds and perception from one `EnvConfig`, so an option and its default live only here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.streaming import ENGINES
from perception.weights import WeightsError, check_config_values, read_weights_config

from ..sim import backend_class
from ..sim.contract import (
    CROSSING_M,
    DEFAULT_CAMERA_LOCATION,
    DEFAULT_CAMERA_SIZE,
    DEFAULT_FOV,
    DEFAULT_ROUTE_LENGTH,
    check_route_length,
)
from .emergency_brake import EmergencyBrakeConfig
from .observation import check_sizes
from .perception_source import BUNDLED_WEIGHTS, GroundTruthPerception, ModelPerception, make_perception
from .reward import RewardConfig
from .road_user_gaps import road_user_observation

PERCEPTION_MODES = ("model", "ground_truth")
CARLA_PORT_SPACING = 4  # a CARLA server uses port, port+1 and port+2


def resolve_town(backend: str, split: str | None, town_index: int, backend_options: dict[str, Any]) -> dict[str, Any]:
    """Backend options with the town picked from `split` (round-robin by `town_index`) unless one is given."""
    if split is None:
        return backend_options
    cls = backend_class(backend)
    towns = cls.towns(split)
    if "town" in backend_options:
        town = backend_options["town"]
        if not isinstance(town, str) or cls.split_of(town) != split:
            raise ValueError(
                f"town {town!r} is not in the {split!r} split of the {backend} backend "
                f"({', '.join(towns)}); pass one of those, or leave out split or town"
            )
        return backend_options
    return {"town": towns[town_index % len(towns)], **backend_options}


def world_options(
    backend: str, index: int, split: str | None, options: dict[str, Any], town_index: int = 0
) -> dict[str, Any]:
    """Backend options of world `index`: town `town_index + index` of `split` (round-robin) unless one
    is given, and for CARLA its own server's port, CARLA_PORT_SPACING apart from `port` (default 2000)."""
    options = dict(resolve_town(backend, split, town_index + index, options))
    if backend == "carla":
        options["port"] = options.get("port", 2000) + CARLA_PORT_SPACING * index
    return options


def default_camera_size(perception: str, weights: str | Path | None) -> tuple[int, int]:
    """The camera size an env gets unless told: the input size in the perception weights' config.json (the
    bundled weights when `weights` is None), so a network trained for larger frames is fed them; 128x256 for
    ground truth, and for weights without a readable size (their loader names what is wrong with them)."""
    if perception != "model":
        return DEFAULT_CAMERA_SIZE
    folder = weights if weights is not None else BUNDLED_WEIGHTS
    try:
        config = read_weights_config(folder)
        check_config_values(config, str(folder))
    except (OSError, WeightsError):
        return DEFAULT_CAMERA_SIZE
    size = config.get("input_size")
    return DEFAULT_CAMERA_SIZE if size is None else (size[0], size[1])


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"EnvConfig.{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"EnvConfig.{name} must be a positive finite number, got {value!r}")
    return number


def _share(name: str, value: Any) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"EnvConfig.{name} must be a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"EnvConfig.{name} must be from 0 to 1, got {value!r}")
    return share


def _metres_range(name: str, value: Any) -> tuple[float, float]:
    try:
        if isinstance(value, str):
            raise TypeError(name)
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"EnvConfig.{name} must be two numbers of metres (low, high), got {value!r}") from None
    if not 0.0 < low <= high < float("inf"):
        raise ValueError(f"EnvConfig.{name} must be finite metres with 0 < low <= high, got {value!r}")
    return low, high


@dataclass
class EnvConfig:
    """The options of `CarlaPerception-v0` (and of its vector env, one world per index).

    Args:
        backend: "embedded" (default, no server) or "carla".
        perception: "model" (the temporal perception network) or "ground_truth" (the simulator's
            own labels, depth and poses: a privileged upper bound with identical spaces).
        weights: weights folder for the model; default the bundled `lite` weights. Model only.
        device: "auto", "cpu" or "cuda" for the model.
        engine: the model's inference engine: "auto" (ONNX Runtime on the CPU, PyTorch on CUDA),
            "torch" or "onnxruntime".
        camera_size: (H, W) of the camera; default (None) the input size of the perception weights (the bundled
            `lite` weights: 128x256), so a network trained for larger frames gets them, and 128x256 for ground truth.
        obs_size: (h, w) of the image observations, no larger than the camera.
        route_length: metres of random route per episode (the autopilot drives 200 m in well under
            the default 1000-step time limit, red lights included).
        split: pick the town from this split of the backend's catalogue ("train", "val", "test");
            world i of a vector env gets town `town_index + i` of the split (round-robin).
        town_index: which town of `split` (the first world's, in a vector env).
        reward: RewardConfig (or a dict of its fields).
        discrete: use the 15-action discrete variant (`CarlaPerceptionDiscrete-v0`).
        blocked_seconds: end the episode after standing still this long with nothing to wait for (no red
            light or road user within `reward.stop_margin + reward.slowdown_distance` ahead).
        max_route_offset: end the episode when farther than this (m) from the route.
        terminate_off_road: end the episode when the ego leaves the road (it is penalised either way).
        terminate_red_light: end the episode when the ego runs a red light (it is penalised either way), as
            Roach does in training; the leaderboard does not, so evaluation leaves it off.
        expert_action: put the simulator autopilot's (steer, acceleration) action for the state of the returned
            observation in `info["expert_action"]` of every reset and step (privileged: the labels of imitation
            learning). A vector env's worlds compute it in their own processes, in the same round trip as the
            step. Needs a backend with an autopilot (embedded).
        pedestrian_crossings: the share of episodes (0 to 1) in which one of the drawn pedestrians steps out to
            cross the road `crossing_distance_m` along the route (the embedded backend's reset option
            `crossing_m`), drawn from each episode's seed, so a seed gives the same episode with any share that
            includes it; a `crossing_m` passed to `reset` wins. Embedded backend only.
        crossing_distance_m: (low, high): how far along the route (m) such a crossing is, drawn uniformly
            between the two from each episode's seed (the same draw scaled into any range). Close crossings put
            the pedestrian ahead while the ego is still gathering speed from rest.
        road_user_gaps: add the `road_users` key to the observation: how far ahead along the route the nearest
            vehicle and pedestrian are, read off the observation's own semantic and depth maps
            (`carla_gym.env.road_user_gaps`; never the simulator's state), as a fraction of 40 m.
        emergency_brake: an automatic emergency brake under the policy (`carla_gym.env.emergency_brake`): while
            perception sees a road user in the route's path within stopping distance, the next step's acceleration
            is a full brake (steering kept) and its info has `emergency_brake` True. True for the defaults, an
            `EmergencyBrakeConfig` or a dict of its fields; None or False for none (the default). Works in every
            world of the vector envs as in one env.
        backend_options: passed to `make_backend` (town, host, port, vehicles, ...).
    """

    backend: str = "embedded"
    perception: str = "model"
    weights: str | Path | None = None
    device: str = "auto"
    engine: str = "auto"
    camera_size: tuple[int, int] | None = None
    obs_size: tuple[int, int] = (40, 80)
    route_length: float = DEFAULT_ROUTE_LENGTH
    split: str | None = None
    town_index: int = 0
    reward: RewardConfig = field(default_factory=RewardConfig)
    discrete: bool = False
    blocked_seconds: float = 10.0
    max_route_offset: float = 6.0
    terminate_off_road: bool = True
    terminate_red_light: bool = False
    expert_action: bool = False
    pedestrian_crossings: float = 0.0
    crossing_distance_m: tuple[float, float] = CROSSING_M
    road_user_gaps: bool = False
    emergency_brake: EmergencyBrakeConfig | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    camera_from_weights: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.perception not in PERCEPTION_MODES:
            raise ValueError(f"EnvConfig.perception must be 'model' or 'ground_truth', got {self.perception!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"EnvConfig.engine must be one of {', '.join(map(repr, ENGINES))}, got {self.engine!r}")
        self.camera_from_weights = self.camera_size is None
        if self.camera_size is None:
            self.camera_size = default_camera_size(self.perception, self.weights)
        self.camera_size, self.obs_size = check_sizes(self.camera_size, self.obs_size)
        self.route_length = check_route_length(self.route_length)
        self.blocked_seconds = _positive("blocked_seconds", self.blocked_seconds)
        self.max_route_offset = _positive("max_route_offset", self.max_route_offset)
        if (
            isinstance(self.town_index, bool)
            or not isinstance(self.town_index, (int, np.integer))
            or self.town_index < 0
        ):
            raise ValueError(f"EnvConfig.town_index must be a non-negative integer, got {self.town_index!r}")
        self.town_index = int(self.town_index)
        self._check_nested_configs()
        self.discrete, self.terminate_off_road = bool(self.discrete), bool(self.terminate_off_road)
        self.terminate_red_light, self.expert_action = bool(self.terminate_red_light), bool(self.expert_action)
        self.backend_options = dict(self.backend_options)
        for reserved in ("size", "route_length"):
            if reserved in self.backend_options:
                option = "camera_size" if reserved == "size" else reserved
                raise ValueError(f"backend option {reserved!r} is set by EnvConfig.{option}; pass {option}= instead")
        # an unknown backend or split, or a town outside the split, fails here rather than in a worker process
        backend = backend_class(self.backend)
        if self.expert_action and not hasattr(backend, "autopilot_control"):
            raise ValueError(f"EnvConfig.expert_action needs a backend with an autopilot; {self.backend!r} has none")
        self._check_pedestrian_crossings(backend.RESET_OPTIONS)
        self.world_options(0)

    def _check_nested_configs(self) -> None:
        """`reward` and `emergency_brake` as their config classes, from a config, a dict of fields or a shorthand."""
        if not isinstance(self.reward, (RewardConfig, dict, type(None))):
            raise ValueError(f"EnvConfig.reward must be a RewardConfig or a dict of its fields, got {self.reward!r}")
        try:
            self.reward = RewardConfig.from_any(self.reward)
        except TypeError as err:
            raise ValueError(f"EnvConfig.reward: {err}") from None
        try:
            self.emergency_brake = EmergencyBrakeConfig.from_any(self.emergency_brake)
        except (TypeError, ValueError) as err:
            raise ValueError(f"EnvConfig.emergency_brake: {err}") from None

    def _check_pedestrian_crossings(self, reset_options: tuple[str, ...]) -> None:
        self.pedestrian_crossings = _share("pedestrian_crossings", self.pedestrian_crossings)
        self.crossing_distance_m = _metres_range("crossing_distance_m", self.crossing_distance_m)
        if not self.pedestrian_crossings:
            return
        if "crossing_m" not in reset_options:
            raise ValueError(f"EnvConfig.pedestrian_crossings needs the embedded backend; {self.backend!r} has none")
        if self.route_length <= self.crossing_distance_m[1]:
            raise ValueError(
                f"EnvConfig.pedestrian_crossings needs routes longer than {self.crossing_distance_m[1]:g} m "
                f"(crossing_distance_m), got route_length={self.route_length:g}"
            )

    @classmethod
    def from_kwargs(cls, config: EnvConfig | None = None, **kwargs: Any) -> EnvConfig:
        """A config from keyword options (those of `CarlaPerceptionEnv`), over `config` when one is given.

        Keywords that are not fields of EnvConfig are backend options (town, vehicles, host, ...).
        """
        if config is not None and not isinstance(config, EnvConfig):
            raise ValueError(f"config must be an EnvConfig, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        fields = {k: v for k, v in kwargs.items() if k in names}
        extra = {k: v for k, v in kwargs.items() if k not in names}
        base = {} if config is None else config.backend_options
        if config is not None and config.camera_from_weights and "camera_size" not in fields:
            fields["camera_size"] = None  # follows the (maybe other) weights again
        fields["backend_options"] = {**base, **fields.get("backend_options", {}), **extra}
        return cls(**fields) if config is None else dataclasses.replace(config, **fields)

    def make_perception(self, num_streams: int) -> GroundTruthPerception | ModelPerception:
        """The perception source for `num_streams` worlds (one batched pass for all of them)."""
        return make_perception(
            self.perception, num_streams, self.obs_size, self.weights, self.device, engine=self.engine
        )

    def world_options(self, index: int = 0) -> dict[str, Any]:
        """`make_backend` options of world `index`: camera size, route length, its town from `split`
        (`town_index + index`, round-robin) and, for CARLA, its own server's port (CARLA_PORT_SPACING apart)."""
        return world_options(
            self.backend,
            index,
            self.split,
            {"size": self.camera_size, "route_length": self.route_length, **self.backend_options},
            self.town_index,
        )

    def observe(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """An assembled observation with the keys these options add (`road_users` under `road_user_gaps`, placed
        with the camera the backend options set: CARLA's `camera_location`, the embedded `camera_forward`, `fov`)."""
        if self.road_user_gaps:
            return {**obs, "road_users": road_user_observation(obs, *self.camera_geometry())}
        return obs

    def brakes(self, obs: dict[str, np.ndarray]) -> bool:
        """Whether the emergency brake (when the options have one) acts on the step after observation `obs`."""
        return self.emergency_brake is not None and self.emergency_brake.brakes(obs, self.camera_geometry())

    def camera_geometry(self) -> tuple[tuple[float, float, float], float]:
        """The camera's location (x forward, y right, z up, metres from the vehicle centre) and horizontal field
        of view (degrees) that the backend options set: CARLA's `camera_location`, the embedded world's
        `camera_forward` and `camera_height`, and `fov`; the defaults where they set none."""
        options = self.backend_options
        x, y, z = tuple(options.get("camera_location", DEFAULT_CAMERA_LOCATION))
        location = (options.get("camera_forward", x), y, options.get("camera_height", z))
        return location, options.get("fov", DEFAULT_FOV)

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DrivingTask` besides the simulator."""
        return {
            "reward": self.reward,
            "blocked_seconds": self.blocked_seconds,
            "max_route_offset": self.max_route_offset,
            "terminate_off_road": self.terminate_off_road,
            "terminate_red_light": self.terminate_red_light,
            "expert_action": self.expert_action,
            "pedestrian_crossings": self.pedestrian_crossings,
            "crossing_distance_m": self.crossing_distance_m,
        }
