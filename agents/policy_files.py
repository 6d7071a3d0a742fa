"""Driving policies on disk without pickle: a folder with `policy.json` and `policy.safetensors`.

Stable-Baselines3's `.zip` files unpickle Python objects when loaded, so opening one runs whatever
code its author put there. A policy folder holds only data: the network's weights in safetensors and
a JSON description from which the policy object is rebuilt (policy class, observation and action
spaces, network sizes, activation, features extractor, gSDE) plus free metadata such as the
perception the policy was trained on. Only classes from the allow-lists below can be named.

A policy trained behind SB3's VecNormalize and VecFrameStack wrappers records them too: the
observation statistics in `normalization.safetensors` (with `obs_normalization` in the JSON) and
the number of stacked frames as `frame_stack`; `agents.evaluate` applies both, normalising first
and stacking second, as the wrappers did in training.

    save_policy(model, "runs/ppo/best_policy", {"perception": "model"})
    policy = load_policy("runs/ppo/best_policy")
    action, _ = policy.predict(obs)

The package ships one policy folder, `agents/bundled`, trained on the package's bundled perception
weights: `load_policy("bundled")` loads it after checking that the SHA-256 of those weights is the
one its JSON records, so a policy and the perception it was trained on cannot drift apart unnoticed.
`bundle_policy` puts a trained policy folder there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save_file as save_arrays
from safetensors.torch import load_model, save_model
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import (
    ActorCriticPolicy,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import (
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.utils import get_device
from torch import nn

from perception.atomic_files import plain_mode

from .features import PerceptionExtractor, check_image_extractor

FORMAT = "carla-perception-gym.policy"
VERSION = 1
CONFIG_FILE = "policy.json"
WEIGHTS_FILE = "policy.safetensors"
NORMALIZATION_FILE = "normalization.safetensors"
BUNDLED = "bundled"  # the name that loads the package's own policy
BUNDLED_POLICY = Path(__file__).resolve().parent / "bundled"  # shipped as package data

# What a policy file may name: anything else is refused, so a file can only pick among these classes.
POLICY_CLASSES: dict[str, type[ActorCriticPolicy]] = {
    "ActorCriticPolicy": ActorCriticPolicy,
    "MultiInputActorCriticPolicy": MultiInputActorCriticPolicy,
}
FEATURES_EXTRACTORS: dict[str, type[nn.Module]] = {
    "PerceptionExtractor": PerceptionExtractor,
    "CombinedExtractor": CombinedExtractor,
    "FlattenExtractor": FlattenExtractor,
    "NatureCNN": NatureCNN,
}
ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.Tanh, nn.ReLU, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU)
}
DTYPES = ("float32", "float64", "uint8", "int8", "int16", "int32", "int64")
_BOOL_KWARGS = (
    "use_sde",
    "full_std",
    "use_expln",
    "squash_output",
    "ortho_init",
    "share_features_extractor",
    "normalize_images",
)


class PolicyFileError(ValueError):
    """A policy folder that is missing, malformed or names something this project does not allow."""


class StalePolicyError(PolicyFileError):
    """The bundled policy was trained on other perception weights than the ones the package bundles."""


@dataclass
class ObsNormalization:
    """VecNormalize's observation statistics, applied as it applies them.

    Each listed key becomes float32 `clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`;
    other keys pass through unchanged.
    """

    mean: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    clip_obs: float
    epsilon: float

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        for key, mean in self.mean.items():
            scaled = (obs[key] - mean) / np.sqrt(self.var[key] + self.epsilon)
            out[key] = np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)
        return out

    def space(self, space: gym.spaces.Dict) -> gym.spaces.Dict:
        """The observation space after normalising, as VecNormalize declares it: image keys it normalises
        become float32 boxes within +-clip_obs (which changes how VecFrameStack stacks them)."""
        spaces = dict(space.spaces)
        for key in self.mean:
            if is_image_space(spaces[key]):
                spaces[key] = gym.spaces.Box(-self.clip_obs, self.clip_obs, spaces[key].shape, np.float32)
        return gym.spaces.Dict(spaces)

    @classmethod
    def from_vecnormalize(cls, vec_normalize: Any) -> ObsNormalization | None:
        """The statistics of an SB3 VecNormalize over a Dict observation (None when it did not normalise observations)."""
        if not vec_normalize.norm_obs:
            return None
        if not isinstance(vec_normalize.obs_rms, dict):
            raise TypeError("only VecNormalize statistics of a Dict observation are supported")
        keys = vec_normalize.norm_obs_keys
        return cls(
            {k: np.asarray(vec_normalize.obs_rms[k].mean, np.float64) for k in keys},
            {k: np.asarray(vec_normalize.obs_rms[k].var, np.float64) for k in keys},
            float(vec_normalize.clip_obs),
            float(vec_normalize.epsilon),
        )


@dataclass
class SavedPolicy:
    """A policy rebuilt from a policy folder: `predict` like SB3's, and callable as `agents.evaluate`'s Policy.

    `predict` takes the observation as the policy saw it in training, i.e. after `normalization` and
    frame stacking (`frame_stack` frames) where the policy was trained with them; `agents.evaluate`
    applies both to the env's raw observation.
    """

    policy: ActorCriticPolicy
    config: dict[str, Any]
    path: Path
    normalization: ObsNormalization | None = None

    @property
    def frame_stack(self) -> int:
        """Observations stacked by VecFrameStack in training (1: none)."""
        return int(self.config.get("frame_stack", 1))

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form facts saved with the policy (perception mode, sizes, training command, ...)."""
        return self.config.get("metadata", {})

    @property
    def observation_space(self) -> gym.Space:
        return self.policy.observation_space

    @property
    def action_space(self) -> gym.Space:
        return self.policy.action_space

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """The action (and recurrent state, None here) for `observation`, as `BasePolicy.predict` returns them."""
        return self.policy.predict(observation, state, episode_start, deterministic)

    def __call__(self, obs: dict[str, np.ndarray], env: gym.Env | None = None) -> np.ndarray:
        return self.predict(obs, deterministic=True)[0]


# -- spaces as JSON ------------------------------------------------------------------------------
def _bound_to_json(values: np.ndarray) -> Any:
    """A Box bound as a scalar (when uniform) or nested lists; infinities as the strings "inf" / "-inf"."""
    flat = values.astype(np.float64)
    encode = np.vectorize(lambda v: v if math.isfinite(v) else ("inf" if v > 0 else "-inf"), otypes=[object])
    if flat.size and np.all(flat == flat.flat[0]):
        return encode(flat.flat[0]).item()
    return encode(flat).tolist()


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A Dict / Box / Discrete space as JSON data (`space_from_json` rebuilds it)."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise TypeError(f"cannot save a policy over a {type(space).__name__} space (supported: Dict, Box, Discrete)")


class _Reader:
    """Reads fields of the JSON description, raising PolicyFileError that names the file and the field."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, field: str, problem: str) -> PolicyFileError:
        return PolicyFileError(f"{self.file}: field '{field}' {problem}")

    def get(
        self, data: dict[str, Any], key: str, field: str, kinds: type | tuple[type, ...], default: Any = ...
    ) -> Any:
        if not isinstance(data, dict):
            raise self.fail(field, f"must be a JSON object, got {type(data).__name__}")
        name = f"{field}.{key}" if field else key
        if key not in data:
            if default is not ...:
                return default
            raise self.fail(name, "is missing")
        value = data[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.fail(name, f"must be {wanted}, got {json.dumps(value)}")
        return value

    def int_list(self, value: Any, field: str, minimum: int) -> list[int]:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
        ):
            raise self.fail(field, f"must be a list of integers >= {minimum}, got {json.dumps(value)}")
        return value

    def bound(self, value: Any, field: str, shape: tuple[int, ...]) -> np.ndarray:
        def number(v: Any) -> float:
            if isinstance(v, list):
                return [number(x) for x in v]  # type: ignore[return-value]
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            if v in ("inf", "-inf"):
                return float(v)
            raise self.fail(field, f"must hold numbers, 'inf' or '-inf', got {json.dumps(v)}")

        array = np.asarray(number(value), dtype=np.float64)
        try:
            return np.broadcast_to(array, shape).copy()
        except ValueError:
            raise self.fail(
                field, f"has shape {list(array.shape)}, which does not fit the space's shape {list(shape)}"
            ) from None

    def space(self, data: Any, field: str) -> gym.Space:
        kind = self.get(data, "type", field, str)
        if kind == "Dict":
            spaces = self.get(data, "spaces", field, dict)
            return gym.spaces.Dict({key: self.space(sub, f"{field}.spaces.{key}") for key, sub in spaces.items()})
        if kind == "Box":
            shape = tuple(self.int_list(self.get(data, "shape", field, list), f"{field}.shape", 1))
            dtype = self.get(data, "dtype", field, str)
            if dtype not in DTYPES:
                raise self.fail(f"{field}.dtype", f"must be one of {', '.join(DTYPES)}, got {json.dumps(dtype)}")
            low = self.bound(self.get(data, "low", field, (int, float, str, list)), f"{field}.low", shape)
            high = self.bound(self.get(data, "high", field, (int, float, str, list)), f"{field}.high", shape)
            if np.any(low > high):
                raise self.fail(f"{field}.low", "exceeds high")
            return gym.spaces.Box(low.astype(dtype), high.astype(dtype), shape, np.dtype(dtype))
        if kind == "Discrete":
            n = self.get(data, "n", field, int)
            if n < 1:
                raise self.fail(f"{field}.n", f"must be >= 1, got {n}")
            return gym.spaces.Discrete(n, start=self.get(data, "start", field, int, 0))
        raise self.fail(f"{field}.type", f"must be Dict, Box or Discrete, got {json.dumps(kind)}")

    def choice(self, data: dict[str, Any], key: str, field: str, allowed: dict[str, Any]) -> Any:
        name = self.get(data, key, field, str)
        if name not in allowed:
            raise self.fail(
                f"{field}.{key}" if field else key,
                f"names {json.dumps(name)}, which is not allowed (allowed: {', '.join(allowed)})",
            )
        return allowed[name]


# -- saving --------------------------------------------------------------------------------------
def describe(policy: BasePolicy) -> dict[str, Any]:
    """The JSON description that rebuilds `policy` (its class, spaces and constructor options)."""
    name = type(policy).__name__
    if not isinstance(policy, ActorCriticPolicy) or POLICY_CLASSES.get(name) is not type(policy):
        raise TypeError(f"cannot save a {name}; policy files hold one of {', '.join(POLICY_CLASSES)}")
    params = policy._get_constructor_parameters()
    extractor = params["features_extractor_class"].__name__
    if FEATURES_EXTRACTORS.get(extractor) is not params["features_extractor_class"]:
        raise TypeError(
            f"cannot save a policy with features extractor {extractor}; allowed: {', '.join(FEATURES_EXTRACTORS)}"
        )
    activation = params["activation_fn"].__name__
    if ACTIVATIONS.get(activation) is not params["activation_fn"]:
        raise TypeError(f"cannot save a policy with activation {activation}; allowed: {', '.join(ACTIVATIONS)}")
    kwargs: dict[str, Any] = {
        key: bool(params[key]) for key in _BOOL_KWARGS if key in params and params[key] is not None
    }
    kwargs["share_features_extractor"] = bool(policy.share_features_extractor)
    kwargs.update(
        net_arch=params["net_arch"],
        activation_fn=activation,
        log_std_init=float(params["log_std_init"]),
        features_extractor_class=extractor,
        features_extractor_kwargs=dict(params["features_extractor_kwargs"] or {}),
    )
    return {
        "policy_class": name,
        "observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(policy.action_space),
        "policy_kwargs": kwargs,
    }


def save_policy(
    model: BaseAlgorithm | ActorCriticPolicy,
    folder: str | Path,
    metadata: dict[str, Any] | None = None,
    normalization: ObsNormalization | None = None,
    frame_stack: int = 1,
) -> Path:
    """Write `model`'s policy as `folder/policy.json` + `folder/policy.safetensors`; returns the folder.

    `normalization` and `frame_stack` record VecNormalize / VecFrameStack wrappers the policy was trained
    behind (stacking applied after normalising), so evaluation feeds it the same observations.

    The folder is written next to its destination and renamed into place, so a failed save leaves any
    earlier policy there untouched; an existing folder that is not a policy folder is never replaced.
    """
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    folder = Path(folder)
    if folder.exists() and not (folder / CONFIG_FILE).is_file():
        raise FileExistsError(f"{folder} exists and is not a policy folder (no {CONFIG_FILE}); refusing to replace it")
    if not isinstance(frame_stack, int) or frame_stack < 1:
        raise ValueError(f"frame_stack must be an integer >= 1, got {frame_stack!r}")
    config = {
        "format": FORMAT,
        "version": VERSION,
        "algorithm": type(model).__name__ if isinstance(model, BaseAlgorithm) else None,
        **describe(policy),
        "frame_stack": frame_stack,
        "metadata": dict(metadata or {}),
    }
    arrays: dict[str, np.ndarray] = {}
    if normalization is not None:
        config["obs_normalization"] = {
            "keys": sorted(normalization.mean),
            "clip_obs": normalization.clip_obs,
            "epsilon": normalization.epsilon,
        }
        for key in normalization.mean:
            arrays[f"{key}.mean"] = np.ascontiguousarray(normalization.mean[key], np.float64)
            arrays[f"{key}.var"] = np.ascontiguousarray(normalization.var[key], np.float64)
    text = json.dumps(config, indent=2, allow_nan=False)

    def write(staging: Path) -> None:
        save_model(policy, str(staging / WEIGHTS_FILE))
        if arrays:
            save_arrays(arrays, str(staging / NORMALIZATION_FILE))
        (staging / CONFIG_FILE).write_text(text + "\n")

    return _write_folder(folder, write)


def _write_folder(folder: Path, write: Any) -> Path:
    """Fill a fresh folder next to `folder` with `write(staging)`, then rename it into place.

    A failure while writing leaves whatever was at `folder` untouched. The folder and its files get plain modes
    (`plain_mode`), not the private ones of a temporary folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        for path in (staging, *staging.iterdir()):
            plain_mode(path)
        old = None
        if folder.exists():
            old = folder.with_name(f"{staging.name}.old")
            os.rename(folder, old)
        os.rename(staging, folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def perception_weights_sha256(perception: str, weights: str | Path | None) -> str | None:
    """SHA-256 of the perception weights an env uses (`weights` folder, else the bundled ones); None for ground truth."""
    if perception != "model":
        return None
    from carla_gym.env.perception_source import BUNDLED_WEIGHTS

    weights_file = Path(weights if weights else BUNDLED_WEIGHTS) / "model.safetensors"
    return file_sha256(weights_file) if weights_file.is_file() else None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (to record which perception weights a policy was trained with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- loading -------------------------------------------------------------------------------------
def is_policy_folder(path: str | Path) -> bool:
    """Whether `path` is a policy folder (or its policy.json)."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() or (path.name == CONFIG_FILE and path.is_file())


def build_policy(config: dict[str, Any], file: Path) -> ActorCriticPolicy:
    """A freshly initialised policy as `config` (a parsed policy.json) describes it; errors name `file`."""
    read = _Reader(file)
    if read.get(config, "format", "", str) != FORMAT:
        raise read.fail("format", f"must be {json.dumps(FORMAT)}, got {json.dumps(config['format'])}")
    if read.get(config, "version", "", int) != VERSION:
        raise read.fail("version", f"must be {VERSION}, got {config['version']} (written by a newer version?)")
    read.get(config, "metadata", "", dict, {})
    policy_class = read.choice(config, "policy_class", "", POLICY_CLASSES)
    observation_space = read.space(read.get(config, "observation_space", "", dict), "observation_space")
    action_space = read.space(read.get(config, "action_space", "", dict), "action_space")
    kwargs = read.get(config, "policy_kwargs", "", dict)
    known = {
        *_BOOL_KWARGS,
        "net_arch",
        "activation_fn",
        "log_std_init",
        "features_extractor_class",
        "features_extractor_kwargs",
    }
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise read.fail(f"policy_kwargs.{unknown[0]}", f"is not a known option (known: {', '.join(sorted(known))})")
    options: dict[str, Any] = {
        key: read.get(kwargs, key, "policy_kwargs", bool) for key in _BOOL_KWARGS if key in kwargs
    }
    net_arch = read.get(kwargs, "net_arch", "policy_kwargs", (list, dict))
    if isinstance(net_arch, dict):
        if set(net_arch) != {"pi", "vf"}:
            raise read.fail("policy_kwargs.net_arch", f"must have the keys pi and vf, got {sorted(net_arch)}")
        net_arch = {k: read.int_list(v, f"policy_kwargs.net_arch.{k}", 1) for k, v in net_arch.items()}
    else:
        net_arch = read.int_list(net_arch, "policy_kwargs.net_arch", 1)
    extractor_kwargs = read.get(kwargs, "features_extractor_kwargs", "policy_kwargs", dict, {})
    for key, value in extractor_kwargs.items():
        if not isinstance(value, (bool, int, float, str)):
            raise read.fail(
                f"policy_kwargs.features_extractor_kwargs.{key}",
                f"must be a number, string or boolean, got {json.dumps(value)}",
            )
    options.update(
        net_arch=net_arch,
        activation_fn=read.choice(kwargs, "activation_fn", "policy_kwargs", ACTIVATIONS),
        log_std_init=float(read.get(kwargs, "log_std_init", "policy_kwargs", (int, float), 0.0)),
        features_extractor_class=read.choice(kwargs, "features_extractor_class", "policy_kwargs", FEATURES_EXTRACTORS),
        features_extractor_kwargs=extractor_kwargs,
    )
    _check_depth_layout(read, observation_space)
    try:
        check_image_extractor(
            observation_space, options["features_extractor_class"], not options.get("normalize_images", True)
        )
    except ValueError as err:
        raise read.fail(
            "policy_kwargs.features_extractor_class", f"does not fit the observation space: {err}"
        ) from None
    try:
        return policy_class(observation_space, action_space, lambda _: 0.0, **options)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as err:
        raise PolicyFileError(
            f"{file}: its policy_kwargs and spaces do not build a {policy_class.__name__}: {err}"
        ) from None


def _check_depth_layout(read: _Reader, space: gym.Space) -> None:
    """Refuse a policy trained on the earlier `CarlaPerception-v0` depth observation (float32 in [0, 1]):
    today's env gives uint8 codes 0..255 on the same log scale, which such a policy would read
    255 times too large, silently."""
    if not isinstance(space, gym.spaces.Dict) or not {"semantic", "depth"} <= set(space.spaces):
        return
    depth = space.spaces["depth"]
    if (
        isinstance(depth, gym.spaces.Box)
        and depth.dtype == np.float32
        and np.all(depth.low == 0.0)
        and np.all(depth.high == 1.0)
    ):
        raise read.fail(
            "observation_space.spaces.depth",
            "is float32 in [0, 1], the depth observation of an earlier CarlaPerception-v0; the env now gives "
            "uint8 0..255 (the same log scale x 255), which this policy would misread: train it again on the current env",
        )


def read_config(config_file: Path) -> dict[str, Any]:
    """A policy.json as a dict (plain JSON); PolicyFileError naming the file when it is not a JSON object."""
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PolicyFileError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise PolicyFileError(f"{config_file}: must hold a JSON object, got {type(config).__name__}")
    return config


def load_policy(path: str | Path, device: str | torch.device = "auto", allow_mismatch: bool = False) -> SavedPolicy:
    """Rebuild the policy saved in the folder `path` (or its policy.json) without unpickling anything.

    `path` "bundled" is the package's own policy (`BUNDLED_POLICY`), loaded only if it was trained on
    the package's bundled perception weights (see `check_bundled_policy`; `allow_mismatch` loads it anyway).
    Reads only JSON and safetensors; the policy class, features extractor and activation must be
    on this module's allow-lists. Raises FileNotFoundError for a missing folder or file and
    PolicyFileError (a ValueError) naming the file and field for anything malformed.
    """
    if isinstance(path, str) and path == BUNDLED:
        path = check_bundled_policy(allow_mismatch)
    path = Path(path)
    folder = path.parent if path.name == CONFIG_FILE else path
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such policy folder (one holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing; a policy folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = read_config(config_file)
    policy = build_policy(config, config_file)
    try:
        load_model(policy, weights_file, strict=True)
    except Exception as err:  # safetensors raises several types for a corrupt file; all mean the same here
        raise PolicyFileError(
            f"{weights_file}: does not hold this policy's weights as {config_file} describes it: {err}"
        ) from None
    read = _Reader(config_file)
    frame_stack = read.get(config, "frame_stack", "", int, 1)
    if frame_stack < 1:
        raise read.fail("frame_stack", f"must be >= 1, got {frame_stack}")
    normalization = None
    if "obs_normalization" in config:
        normalization = _load_normalization(
            read, config, policy.observation_space, folder / NORMALIZATION_FILE, frame_stack
        )
    policy.to(get_device(device))
    policy.set_training_mode(False)
    return SavedPolicy(policy, config, folder, normalization)


def _load_normalization(
    read: _Reader, config: dict[str, Any], space: gym.Space, file: Path, frame_stack: int
) -> ObsNormalization:
    """The VecNormalize statistics of a policy folder, checked against the policy's (stacked) observation space."""
    info = read.get(config, "obs_normalization", "", dict)
    keys = read.get(info, "keys", "obs_normalization", list)
    clip_obs = float(read.get(info, "clip_obs", "obs_normalization", (int, float)))
    epsilon = float(read.get(info, "epsilon", "obs_normalization", (int, float)))
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; {read.file} says the policy normalises its observations")
    try:
        arrays = load_arrays(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise PolicyFileError(f"{file}: not a safetensors file ({err})") from None
    mean: dict[str, np.ndarray] = {}
    var: dict[str, np.ndarray] = {}
    for key in keys:
        if not isinstance(space, gym.spaces.Dict) or key not in space.spaces:
            raise read.fail("obs_normalization.keys", f"names {json.dumps(key)}, which is not an observation key")
        for name, store in (("mean", mean), ("var", var)):
            array = arrays.get(f"{key}.{name}")
            if array is None:
                raise PolicyFileError(f"{file}: has no '{key}.{name}' array")
            # Statistics are per frame; the policy's space holds `frame_stack` of them.
            key_shape = cast(tuple[int, ...], space.spaces[key].shape)  # a Box: its shape is set
            if array.size * frame_stack != int(np.prod(key_shape)):
                raise PolicyFileError(
                    f"{file}: '{key}.{name}' has shape {list(array.shape)}, which does not fit "
                    f"the observation {list(key_shape)} over {frame_stack} frame(s)"
                )
            store[key] = array
    return ObsNormalization(mean, var, clip_obs, epsilon)


def copy_weights(source: SavedPolicy, target: BasePolicy) -> None:
    """Load a saved policy's weights into a policy of the same architecture (e.g. a new PPO's, to go on training)."""
    if source.observation_space != target.observation_space or source.action_space != target.action_space:
        raise PolicyFileError(
            f"{source.path}: its spaces differ from the model's "
            f"({source.observation_space} / {source.action_space} vs "
            f"{target.observation_space} / {target.action_space})"
        )
    # fixed buffers that are not saved as weights (not in the state dict), e.g. PerceptionExtractor's state mask
    # (--no-last-action); saved buffers such as BatchNorm statistics are copied below
    built, saved = dict(source.policy.named_buffers()), source.policy.state_dict().keys()
    for name, buffer in target.named_buffers():
        if name in built and name not in saved and not torch.equal(built[name], buffer.to(built[name].device)):
            raise PolicyFileError(
                f"{source.path}: its {name} differs from the model's (one policy sees its last action, the other "
                "not: --no-last-action); start from a policy with the same options"
            )
    try:
        target.load_state_dict(source.policy.state_dict())
    except RuntimeError as err:
        raise PolicyFileError(f"{source.path}: its network does not match the model's: {err}") from None


# -- the bundled policy --------------------------------------------------------------------------
def bundled_perception_sha256() -> str | None:
    """SHA-256 of the package's bundled perception weights (None when the package has none)."""
    return perception_weights_sha256("model", None)


def check_bundled_policy(allow_mismatch: bool = False) -> Path:
    """The bundled policy's folder, once it is known to exist and to fit the package's perception weights.

    Raises FileNotFoundError when the package holds no bundled policy, and StalePolicyError naming
    both hashes and the policy's training command when its JSON records another SHA-256 of the
    perception weights than the package's bundled ones have (a policy only drives well on the
    perception it was trained on), unless `allow_mismatch`.
    """
    config_file = BUNDLED_POLICY / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(
            f"no bundled policy in this package yet ({config_file} is missing): train a policy on the bundled "
            "perception weights (docs/agents.md) and put it there with `python -m agents.bundle FOLDER`"
        )
    read = _Reader(config_file)
    metadata = read.get(read_config(config_file), "metadata", "", dict, {})
    recorded, current = metadata.get("perception_weights_sha256"), bundled_perception_sha256()
    if recorded != current and not allow_mismatch:
        command = metadata.get("command") or "its training command (not recorded)"
        raise StalePolicyError(
            f"the bundled policy ({config_file}) was trained on perception weights with SHA-256 {recorded}, "
            f"but the package's bundled perception weights have SHA-256 {current}: it was not retrained on them. "
            f"Retrain it on the bundled weights with `{command}` and bundle the result with "
            "`python -m agents.bundle FOLDER`, or load it anyway with allow_mismatch=True (--allow-mismatch)"
        )
    return BUNDLED_POLICY


def bundle_policy(
    source: str | Path,
    scores: dict[str, Any] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Copy the policy folder `source` into the package as the bundled policy; returns its folder.

    The policy must have been trained on model perception with the package's bundled perception
    weights (its recorded SHA-256 must match them), and must load. `scores` (e.g. `agents.evaluate`
    summaries by route set) and `extra_metadata` (e.g. the whole recipe's command and wall time) are
    added to its metadata, and its `perception_weights` becomes None (the package's default weights, which the hash
    shows they are: the folder it was trained from may have moved since). The earlier bundled policy is replaced only
    once the new one is written.
    """
    saved = load_policy(source, device="cpu")
    recorded, current = saved.metadata.get("perception_weights_sha256"), bundled_perception_sha256()
    if saved.metadata.get("perception") != "model" or recorded != current:
        raise StalePolicyError(
            f"{saved.path}: trained with perception {json.dumps(saved.metadata.get('perception'))} and perception "
            f"weights SHA-256 {recorded}; the bundled policy must be trained on model perception with the "
            f"package's bundled weights (SHA-256 {current})"
        )
    config = dict(saved.config)
    config["metadata"] = {
        **saved.metadata,
        "perception_weights": None,
        **(extra_metadata or {}),
        **({"scores": scores} if scores else {}),
    }
    text = json.dumps(config, indent=2, allow_nan=False)

    def write(staging: Path) -> None:
        for name in (WEIGHTS_FILE, NORMALIZATION_FILE):
            if (saved.path / name).is_file():
                shutil.copyfile(saved.path / name, staging / name)
        (staging / CONFIG_FILE).write_text(text + "\n")

    return _write_folder(BUNDLED_POLICY, write)
