"""`make_vec`: n worlds in worker processes, perception for all of them in one batch in the main process.

With `perception="model"`, stepping n copies of `CarlaPerception-v0` in `SubprocVecEnv` would load
n models and run n batch-1 forward passes that fight over the CPU cores. Here the workers only
simulate (world, reward, termination); the main process runs one batched forward pass over the n
camera frames on one device. The result is a Stable-Baselines3 `VecEnv` with SB3's auto-reset
semantics (`terminal_observation` and `TimeLimit.truncated` in `info`).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

from ..sim import make_backend
from .carla_perception_env import resolve_town
from .observation import observation_space
from .perception_source import make_perception
from .reward import RewardConfig
from .task import DISCRETE_ACTIONS, DrivingTask, check_action


CARLA_PORT_SPACING = 4  # a CARLA server uses port, port+1 and port+2


@dataclass
class _WorkerSpec:
    backend: str
    backend_options: dict[str, Any]
    reward: RewardConfig
    blocked_seconds: float
    max_route_offset: float
    max_episode_steps: int | None
    terminate_off_road: bool


def world_options(backend: str, index: int, split: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Backend options of world `index`: its town from `split`, and for CARLA its own server's port."""
    options = resolve_town(backend, split, index, options)
    if backend == "carla":  # one server per world, CARLA_PORT_SPACING ports apart
        options["port"] = options.get("port", 2000) + CARLA_PORT_SPACING * index
    return options


def _worker(conn: Any, spec: _WorkerSpec) -> None:
    """A worker process: one world and its driving task, driven by commands over a pipe."""
    import torch

    torch.set_num_threads(1)  # the main process owns the cores for perception
    task = None
    try:
        task = DrivingTask(make_backend(spec.backend, **spec.backend_options), spec.reward, spec.blocked_seconds,
                           spec.max_route_offset, spec.max_episode_steps, spec.terminate_off_road)
        rng = seeding.np_random(None)[0]
        conn.send(("ok", None))
        while True:
            cmd, data = conn.recv()
            if cmd == "reset":
                seed, options = data
                if seed is not None:
                    rng = seeding.np_random(seed)[0]  # as Env.reset(seed=...) seeds np_random
                frame, info = task.reset(int(rng.integers(2**31 - 1)), options)
                conn.send(("ok", (frame, task.vector_observation(frame), info)))
            elif cmd == "step":
                result = task.step(data)
                vectors = task.vector_observation(result.frame)
                after_reset = None
                if result.terminated or result.truncated:  # SB3 semantics: reset at once, inside the worker
                    frame, info = task.reset(int(rng.integers(2**31 - 1)), None)
                    after_reset = (frame, task.vector_observation(frame), info)
                conn.send(("ok", (result, vectors, after_reset)))
            elif cmd == "call":
                name, args, kwargs = data
                target = task if hasattr(task, name) else task.sim
                attr = getattr(target, name)
                conn.send(("ok", attr(*args, **kwargs) if callable(attr) else attr))
            elif cmd == "close":
                break
    except (KeyboardInterrupt, EOFError):
        pass
    except Exception:  # report to the main process instead of dying silently
        conn.send(("error", traceback.format_exc()))
    finally:
        if task is not None:
            task.close()
        conn.close()


class BatchedPerceptionVecEnv(VecEnv):
    """n `CarlaPerception-v0` worlds stepped in worker processes, perceived in one batch (see `make_vec`)."""

    def __init__(
        self,
        num_envs: int,
        backend: str = "embedded",
        perception: str = "model",
        weights: str | Path | None = None,
        device: str = "auto",
        camera_size: tuple[int, int] = (128, 256),
        obs_size: tuple[int, int] = (40, 80),
        route_length: float = 200.0,
        split: str | None = None,
        reward: RewardConfig | dict[str, float] | None = None,
        discrete: bool = False,
        blocked_seconds: float = 10.0,
        max_route_offset: float = 6.0,
        terminate_off_road: bool = True,
        max_episode_steps: int | None = 1000,
        start_method: str = "forkserver",
        **backend_options: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.discrete = discrete
        self.perception = make_perception(perception, num_envs, obs_size, weights, device)
        reward_config = RewardConfig.from_any(reward)
        ctx = mp.get_context(start_method)
        self._conns, self._procs = [], []
        for i in range(num_envs):
            options = world_options(backend, i, split, {"size": tuple(camera_size), "route_length": route_length,
                                                         **backend_options})
            spec = _WorkerSpec(backend, options, reward_config, blocked_seconds, max_route_offset, max_episode_steps,
                               terminate_off_road)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec), daemon=True, name=f"carla_gym-world-{i}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.closed = False
        try:
            for i in range(num_envs):
                self._receive(i)
        except BaseException:
            self.close()
            raise
        action_space = gym.spaces.Discrete(len(DISCRETE_ACTIONS)) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        super().__init__(num_envs, observation_space(tuple(obs_size)), action_space)

    # -- pipes ---------------------------------------------------------------------------------
    def _receive(self, i: int) -> Any:
        status, payload = self._conns[i].recv()
        if status == "error":
            raise RuntimeError(f"world {i} failed in its worker process:\n{payload}")
        return payload

    def _observations(self, perceived: dict[str, np.ndarray], vectors: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [
            {"semantic": perceived["semantic"][k], "depth": perceived["depth"][k],
             "ego_motion": perceived["ego_motion"][k].astype(np.float32), **vectors[k]}
            for k in range(len(vectors))
        ]

    @staticmethod
    def _stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}

    # -- VecEnv API ----------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        for i, conn in enumerate(self._conns):
            conn.send(("reset", (self._seeds[i], self._options[i] or None)))
        replies = [self._receive(i) for i in range(self.num_envs)]
        for i in range(self.num_envs):
            self.perception.reset(i)
        frames, vectors, infos = zip(*replies)
        self.reset_infos = list(infos)
        self._reset_seeds()
        self._reset_options()
        return self._stack(self._observations(self.perception.step(list(frames)), list(vectors)))

    def step_async(self, actions: np.ndarray) -> None:
        checked = [check_action(a, self.discrete) for a in actions]  # NaN raises here, before any world moves
        for conn, action in zip(self._conns, checked):
            conn.send(("step", action))

    def step_wait(self) -> VecEnvStepReturn:
        replies = [self._receive(i) for i in range(self.num_envs)]
        results = [r[0] for r in replies]
        obs = self._observations(self.perception.step([r.frame for r in results]), [r[1] for r in replies])
        done = [i for i, r in enumerate(results) if r.terminated or r.truncated]
        infos = [dict(r.info) for r in results]
        for i in done:
            infos[i]["terminal_observation"] = obs[i]
            infos[i]["TimeLimit.truncated"] = results[i].truncated and not results[i].terminated
        if done:
            for i in done:
                self.perception.reset(i)
            restarted = [replies[i][2] for i in done]
            fresh = self._observations(self.perception.step([r[0] for r in restarted], streams=done), [r[1] for r in restarted])
            for i, o, r in zip(done, fresh, restarted):
                obs[i] = o
                self.reset_infos[i] = r[2]
        rewards = np.array([r.reward for r in results], dtype=np.float32)
        dones = np.array([r.terminated or r.truncated for r in results])
        return self._stack(obs), rewards, dones, infos

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def _call(self, name: str, indices: Any, *args: Any, **kwargs: Any) -> list[Any]:
        targets = self._get_indices(indices)
        for i in targets:
            self._conns[i].send(("call", (name, args, kwargs)))
        return [self._receive(i) for i in targets]

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._get_indices(indices))
        return self._call(attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError("the worlds of make_vec are configured at construction; set_attr is not supported")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """Call a method of each world's driving task or simulator, e.g. `env_method("autopilot_control")`."""
        return self._call(method_name, indices, *method_args, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def make_vec(num_envs: int, **kwargs: Any) -> BatchedPerceptionVecEnv:
    """n `CarlaPerception-v0` worlds with batched perception, as a Stable-Baselines3 VecEnv.

    Keyword arguments are those of `CarlaPerceptionEnv` (backend, perception, weights, device,
    camera_size, obs_size, split, reward, discrete, ... and backend options) plus
    `max_episode_steps` (default 1000) and `start_method`. With `backend="carla"`, world i connects
    to the server at `port + 4 * i` (traffic manager 6000 above it). With `split`, world i gets town i of the
    split (round-robin). Seed with `vec.seed(s)` before `reset()`: world i then matches
    `gym.make("CarlaPerception-v0", ...)` reset with seed s + i.
    """
    return BatchedPerceptionVecEnv(num_envs, **kwargs)
