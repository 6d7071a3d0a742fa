"""Train on Ray RLlib: `CarlaPerception-v0` registered with Ray, its worlds spread over env runners.

RLlib runs many env runners (processes, possibly on other machines), each holding a group of worlds.
`make_env` gives every world a global index, `(runner - 1) * worlds per runner + slot`, and from it
the world's town (round-robin over `split`, as `make_vec` does) and, with `backend="carla"`, the
port of its own CARLA server (`port + CARLA_PORT_SPACING * index`).

RLlib's default encoders take one flat vector or one image, not the env's Dict of images and
vectors, so `PerceptionRLModule` puts the `PerceptionExtractor` of `agents.train_ppo` (a small CNN
over semantic + depth, an MLP over the vectors) under a policy head and a value head.

Needs the optional extra: `pip install "carla-perception-gym[rllib]"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, cast

import gymnasium as gym
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.tune.registry import register_env
from torch import nn

import carla_gym  # noqa: F401  (registers the Gymnasium envs)
from carla_gym.env.config import world_options

from .features import PerceptionExtractor

ENV_NAME = "CarlaPerception-v0"


def world_index(worker_index: int, vector_index: int, num_envs: int) -> int:
    """Global index of world `vector_index` of env runner `worker_index`, each runner holding `num_envs`.

    Remote runners count from 1; runner 0 is the driver's local runner, which samples only when
    there are no remote runners, so it shares the first block of indices with runner 1.
    """
    if num_envs < 1 or not 0 <= vector_index < num_envs or worker_index < 0:
        raise ValueError(
            f"bad world slot: worker_index {worker_index}, vector_index {vector_index}, "
            f"num_envs {num_envs} (need worker_index >= 0 and 0 <= vector_index < num_envs)"
        )
    return max(worker_index - 1, 0) * num_envs + vector_index


def world_kwargs(env_config: Mapping[str, Any], worker_index: int, vector_index: int, num_envs: int) -> dict[str, Any]:
    """`gym.make` keyword arguments of one world: `env_config` with its town and (CARLA) port filled in.

    The town is taken round-robin from `split` by the world's global index (offset by `town_index`,
    if given); with `backend="carla"`, `port` (default 2000) is the base port of runner 1's first
    world and every world gets its own server, `CARLA_PORT_SPACING` ports apart.
    """
    kwargs = {k: v for k, v in env_config.items() if k not in ("num_envs", "town_index")}
    index = world_index(worker_index, vector_index, num_envs)
    backend = kwargs.get("backend", "embedded")
    return world_options(backend, index, kwargs.get("split"), kwargs, env_config.get("town_index", 0))


def make_env(env_context: Mapping[str, Any], worker_index: int | None = None) -> gym.Env | gym.vector.VectorEnv:
    """RLlib env creator: one world, or with `num_envs` in `env_context` the runner's whole group
    as one `SyncVectorEnv` whose worlds each get their own index.

    `env_context` is RLlib's `EnvContext` (the `env_config` dict plus `worker_index`). RLlib's own
    sync/async vectorization hands every world of a runner the same context, so they would share a
    town and a CARLA port; in `gym_env_vectorize_mode="vector_entry_point"` it passes `num_envs`
    but as a plain dict without `worker_index`, which `IndexedEnvRunner` then supplies.
    """
    if worker_index is None:
        worker_index = getattr(env_context, "worker_index", 0)
    if "num_envs" in env_context:
        n = int(env_context["num_envs"])
        return gym.vector.SyncVectorEnv([partial(_make_world, env_context, worker_index, j, n) for j in range(n)])
    return _make_world(env_context, worker_index, getattr(env_context, "vector_index", 0), 1)


class IndexedEnvRunner(SingleAgentEnvRunner):
    """RLlib's single-agent env runner, building its worlds with `make_env` and its own `worker_index`."""

    config: Any  # RLlib's AlgorithmConfig, set by the base class

    def make_env(self) -> None:
        if not getattr(self, "_indexed", False):  # once: the config is RLlib's frozen copy
            self.config = self.config.copy(copy_frozen=False).environment(
                env=partial(make_env, worker_index=self.worker_index)
            )
            self._indexed = True
        super().make_env()


def _make_world(env_config: Mapping[str, Any], worker_index: int, vector_index: int, num_envs: int) -> gym.Env:
    return gym.make(ENV_NAME, **world_kwargs(env_config, worker_index, vector_index, num_envs))


def register_with_ray(name: str = ENV_NAME) -> str:
    """Register `make_env` with Ray Tune under `name` (call it in the driver; RLlib ships the
    creator to its env runners) and return the name, for `config.environment(name, ...)`."""
    register_env(name, make_env)
    return name


class PerceptionRLModule(TorchRLModule, ValueFunctionAPI):
    """Actor-critic for the `CarlaPerception-v0` Dict observation: a shared `PerceptionExtractor`
    (model_config: `cnn_channels`, `vector_dim`, `features_dim`) under a policy and a value head.

    The policy head outputs the action distribution's inputs (mean and log-std per action for the
    continuous env, logits for the discrete one); the semantic channels arrive as uint8 and are
    scaled to [0, 1] here, as Stable-Baselines3 does for the same extractor.
    """

    def setup(self) -> None:
        cfg = {"cnn_channels": 32, "vector_dim": 64, "features_dim": 256, **cast(dict, self.model_config or {})}
        self.encoder = PerceptionExtractor(
            cast(gym.spaces.Dict, self.observation_space), cfg["cnn_channels"], cfg["vector_dim"], cfg["features_dim"]
        )
        space = self.action_space
        outputs = space.n if isinstance(space, gym.spaces.Discrete) else 2 * cast(gym.spaces.Box, space).shape[0]
        self.pi = nn.Linear(cfg["features_dim"], outputs)
        self.vf = nn.Linear(cfg["features_dim"], 1)
        nn.init.orthogonal_(self.pi.weight, gain=0.01)  # near-uniform first policy, as SB3 initialises it
        nn.init.zeros_(self.pi.bias)

    def _features(self, batch: dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS]
        return self.encoder({**obs, "semantic": obs["semantic"].float() / 255.0})

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.pi(self._features(batch))}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        features = self._features(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(features), Columns.EMBEDDINGS: features}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self._features(batch)
        return self.vf(embeddings).squeeze(-1)


class DrivingMetrics(RLlibCallback):
    """Logs each finished episode's route completion and distance (from its last `info`), averaged
    per iteration under `env_runners/route_completion` and `env_runners/distance`."""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        info = episode.get_infos(-1)
        for key in ("route_completion", "distance"):
            if key in info:
                metrics_logger.log_value(key, float(info[key]), reduce="mean")


def ppo_config(
    env_config: Mapping[str, Any] | None = None,
    num_env_runners: int = 2,
    num_envs_per_env_runner: int = 1,
    model_config: Mapping[str, Any] | None = None,
    **training: Any,
) -> PPOConfig:
    """A PPO config (RLlib's new API stack) for `CarlaPerception-v0`: the registered env, one
    indexed group of worlds per env runner, `PerceptionRLModule`, `DrivingMetrics`, and `training`
    passed to `PPOConfig.training` (e.g. `train_batch_size_per_learner`, `minibatch_size`, `lr`)."""
    if num_env_runners < 0 or num_envs_per_env_runner < 1:
        raise ValueError(
            f"need num_env_runners >= 0 and num_envs_per_env_runner >= 1, "
            f"got {num_env_runners} and {num_envs_per_env_runner}"
        )
    return (
        PPOConfig()
        .environment(register_with_ray(), env_config=dict(env_config or {}))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            gym_env_vectorize_mode="vector_entry_point",
            env_runner_cls=IndexedEnvRunner,
        )
        .rl_module(rl_module_spec=RLModuleSpec(module_class=PerceptionRLModule, model_config=dict(model_config or {})))
        .callbacks(DrivingMetrics)
        .training(**training)
    )
