"""Policies that `agents.evaluate` can score: a saved policy folder, a trusted SB3 .zip, the world's autopilot, random actions.

A learned policy is wrapped in a `ModelDriver`, which feeds it what its training wrappers fed it:
VecNormalize's observation statistics, then VecFrameStack's stacked frames, and for a recurrent
policy (sb3-contrib's RecurrentPPO) the LSTM state carried from step to step and reset when an
episode starts.
"""

from __future__ import annotations

import importlib
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from carla_gym.env.contracts import control_to_action

from . import policy_files
from .policy_files import ObsNormalization

if TYPE_CHECKING:
    from carla_gym.env.carla_perception_env import CarlaPerceptionEnv

Policy = Callable[[dict[str, np.ndarray], gym.Env], Any]

ENV_ID = "CarlaPerception-v0"

# The algorithm that saved a .zip, told by the module of its policy class, which the zip's JSON names
# in plain text (read without unpickling). A2C and TRPO share PPO's policies: PPO loads them for prediction.
ALGORITHMS = {
    "stable_baselines3.common.policies": ("stable_baselines3", "PPO"),
    "stable_baselines3.sac.policies": ("stable_baselines3", "SAC"),
    "stable_baselines3.td3.policies": ("stable_baselines3", "TD3"),
    "stable_baselines3.dqn.policies": ("stable_baselines3", "DQN"),
    "sb3_contrib.common.recurrent.policies": ("sb3_contrib", "RecurrentPPO"),
    "sb3_contrib.tqc.policies": ("sb3_contrib", "TQC"),
}


def autopilot_policy(obs: dict[str, np.ndarray], env: gym.Env) -> np.ndarray:
    """The simulator's route-following autopilot (privileged: it sees the world, not the camera)."""
    return control_to_action(cast("CarlaPerceptionEnv", env.unwrapped).autopilot_control())


def random_policy(obs: dict[str, np.ndarray], env: gym.Env) -> Any:
    """Uniformly random actions from the env's action space (seeded by `env.action_space.seed`)."""
    return env.action_space.sample()


class ModelDriver:
    """Drives one env with an SB3-style `predict` model, rebuilding the observations it was trained on.

    Call `reset()` when an episode starts: it clears the stacked frames and the recurrent state.
    """

    def __init__(
        self,
        model: Any,
        metadata: dict[str, Any] | None = None,
        frame_stack: int = 1,
        normalization: ObsNormalization | None = None,
    ) -> None:
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.model, self.metadata = model, dict(metadata or {})
        self.frame_stack, self.normalization = frame_stack, normalization
        self._stack: StackedObservations | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode: the next call starts a fresh frame stack and recurrent state."""
        self._state: Any = None
        self._episode_start = True

    def normalized_space(self, env_space: gym.spaces.Dict) -> gym.spaces.Dict:
        """The space of the observations after normalising (what frame stacking works on)."""
        return self.normalization.space(env_space) if self.normalization is not None else env_space

    def input_space(self, env_space: gym.spaces.Dict) -> gym.spaces.Dict:
        """The observation space the model sees when the env's observations come in `env_space`."""
        if self.frame_stack == 1:
            return self.normalized_space(env_space)
        stacked = StackedObservations(1, self.frame_stack, self.normalized_space(env_space)).stacked_observation_space
        return cast(gym.spaces.Dict, stacked)  # stacking a Dict space gives a Dict space

    def check_space(self, env_space: gym.spaces.Dict) -> None:
        """Raise ValueError naming the keys whose shapes or dtypes differ between what the model takes and what it would
        get."""
        expected, given = self.model.observation_space, self.input_space(env_space)
        if not isinstance(expected, gym.spaces.Dict) or set(expected.spaces) != set(given.spaces):
            raise ValueError(f"the policy takes observations {expected}, the env gives {given}")
        wrong = [
            f"{key} {list(cast(gym.spaces.Box, given[key]).shape)} (policy takes {list(cast(gym.spaces.Box, expected[key]).shape)})"
            for key in expected.spaces
            if expected[key].shape != given[key].shape
        ]
        if wrong:
            raise ValueError(
                f"observation shapes differ: evaluation gives {', '.join(wrong)} with frame_stack "
                f"{self.frame_stack}; check the camera/observation size and frame stacking"
            )
        wrong = [
            f"{key} {given[key].dtype} (policy takes {expected[key].dtype})"
            for key in expected.spaces
            if expected[key].dtype != given[key].dtype
        ]
        if wrong:  # e.g. a policy trained when depth was float32 in [0, 1] would read 255 times too far
            raise ValueError(f"observation types differ: evaluation gives {', '.join(wrong)}; train the policy again")

    def __call__(self, obs: dict[str, np.ndarray], env: gym.Env) -> Any:
        if self.normalization is not None:
            obs = self.normalization(obs)
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        if self.frame_stack > 1:
            if self._episode_start or self._stack is None:  # the first call after reset() starts the stack
                env_space = cast(gym.spaces.Dict, env.observation_space)
                self._stack = StackedObservations(1, self.frame_stack, self.normalized_space(env_space))
                batch = self._stack.reset(batch)
            else:
                batch, _ = self._stack.update(batch, np.zeros(1, bool), [{}])
        action, self._state = self.model.predict(
            batch, state=self._state, episode_start=np.array([self._episode_start]), deterministic=True
        )
        self._episode_start = False
        return action[0]


def load_policy(
    name: str,
    device: str = "auto",
    trust_pickle: bool = False,
    frame_stack: int | None = None,
    vecnormalize: str | Path | None = None,
    allow_mismatch: bool = False,
) -> Policy:
    """ "autopilot", "random", "bundled" (the package's policy, refused unless `allow_mismatch` when the package's
    perception weights are not the ones it was trained on), a policy folder (`agents.policy_files`), or with
    `trust_pickle` an SB3 .zip.

    A policy folder is read without unpickling anything. A Stable-Baselines3 .zip unpickles Python
    objects, which can run any code its author chose, so it is loaded only when `trust_pickle` says the
    caller trusts the file; so is a VecNormalize `vecnormalize.pkl`. For a .zip from RL Baselines3 Zoo,
    the run's `vecnormalize.pkl` and frame stacking (`config.yml`) are found next to it;
    `vecnormalize` and `frame_stack` name them for other layouts (and override what a folder records).
    """
    if name == "autopilot":
        return autopilot_policy
    if name == "random":
        return random_policy
    path = policy_files.check_bundled_policy(allow_mismatch) if name == policy_files.BUNDLED else Path(name)
    if policy_files.is_policy_folder(path) or path.is_dir():
        saved = policy_files.load_policy(path, device=device)
        normalization = saved.normalization
        if vecnormalize is not None:
            normalization = load_vecnormalize(Path(vecnormalize), trust_pickle)
        return ModelDriver(saved, saved.metadata, frame_stack or saved.frame_stack, normalization)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such policy (POLICY is a policy folder, 'bundled', 'autopilot' or 'random')"
        )
    if not trust_pickle:
        raise PickleRefusedError(
            f"{path} is not a policy folder; if it is a Stable-Baselines3 .zip, loading it unpickles Python objects, "
            "which runs any code the file's author put there. Load it only if you trust it, with --trust-pickle "
            "(trust_pickle=True), and convert it once with `python -m agents.convert_policy` (see its help)"
        )
    return load_zoo_run(path, device, frame_stack, vecnormalize)


def load_zoo_run(
    path: Path, device: str = "auto", frame_stack: int | None = None, vecnormalize: str | Path | None = None
) -> ModelDriver:
    """A trusted SB3 .zip with the wrappers of its RL Baselines3 Zoo run (unpickles: trusted files only).

    The Zoo keeps a run's settings (`config.yml`: frame_stack, normalize) and VecNormalize statistics
    in `ENV_ID/` next to the .zip; `frame_stack` and `vecnormalize` override them."""
    model = load_sb3(path, device)
    stats = path.parent / ENV_ID
    config = zoo_config(stats / "config.yml")
    if vecnormalize is None and config.get("normalize") and (stats / "vecnormalize.pkl").is_file():
        vecnormalize = stats / "vecnormalize.pkl"
    normalization = load_vecnormalize(Path(vecnormalize), True) if vecnormalize is not None else None
    return ModelDriver(model, {}, frame_stack or int(config.get("frame_stack") or 1), normalization)


def load_sb3(path: Path, device: str = "auto") -> Any:
    """Load a trusted SB3 / sb3-contrib .zip with the algorithm that saved it (unpickles: trusted files only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            module = json.loads(archive.read("data"))["policy_class"]["__module__"]
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a Stable-Baselines3 .zip ({err})") from None
    if module not in ALGORITHMS:
        raise ValueError(
            f"{path}: saved with a policy from {module}, which agents.evaluate does not know "
            f"(known: {', '.join(ALGORITHMS)})"
        )
    package, class_name = ALGORITHMS[module]
    try:
        algorithm = getattr(importlib.import_module(package), class_name)
    except ImportError:
        raise ValueError(
            f"{path} is a {class_name} model, which needs {package} (pip install {package.replace('_', '-')})"
        ) from None
    # Schedules are not needed to predict; a replay buffer of one transition avoids allocating a large one.
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    extra = {"buffer_size": 1} if class_name in ("SAC", "TD3", "DQN", "TQC") else {}
    return algorithm.load(path, device=device, custom_objects=custom, **extra)


def load_vecnormalize(path: Path, trust_pickle: bool) -> ObsNormalization | None:
    """The observation statistics of an SB3 `vecnormalize.pkl` (a pickle: loaded only with `trust_pickle`)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such VecNormalize file")
    if not trust_pickle:
        raise PickleRefusedError(
            f"{path} is a pickle (VecNormalize statistics); loading it runs any code it holds: "
            "pass --trust-pickle only if you trust it"
        )
    with open(path, "rb") as f:
        return ObsNormalization.from_vecnormalize(pickle.load(f))


class _ZooConfigLoader(yaml.SafeLoader):
    """Reads the Zoo's `config.yml` as plain data: Python tags become dicts, lists or the names they hold."""


def _python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        items = loader.construct_sequence(node, deep=True)
        return dict(items[0]) if suffix == "object/apply:collections.OrderedDict" and items else items
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return suffix.split(":", 1)[-1]  # python/name:agents.features.PerceptionExtractor -> the dotted name


_ZooConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _python_tag)


def zoo_config(path: Path) -> dict[str, Any]:
    """An RL Baselines3 Zoo run's saved hyperparameters (`config.yml`), without running anything; {} when absent."""
    if not path.is_file():
        return {}
    try:
        config = yaml.load(path.read_text(), Loader=_ZooConfigLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not a readable Zoo config ({err})") from None
    return config if isinstance(config, dict) else {}


class PickleRefusedError(ValueError):
    """A policy file that could only be loaded by unpickling it, and the caller did not say it trusts it."""
