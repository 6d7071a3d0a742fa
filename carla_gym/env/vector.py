"""Vector envs of `CarlaPerception-v0`: n worlds in worker processes, perception for all of them in one batch.

With `perception="model"`, stepping n copies of `CarlaPerception-v0` in Gymnasium's `AsyncVectorEnv`
or SB3's `SubprocVecEnv` would load n models and run n batch-1 forward passes that fight over the
CPU cores. Here the workers simulate (world, reward, termination) and send only the camera image;
the main process runs one batched forward pass over the n camera frames on one device. Ground-truth
perception, with no model to batch, runs in the workers, which send only its observation arrays.

`CarlaPerceptionVectorEnv` is the implementation, a Gymnasium `VectorEnv` registered as the
`vector_entry_point` of both env ids, so `gym.make_vec("CarlaPerception-v0", num_envs=n)` returns
it. It autoresets in the same step (`AutoresetMode.SAME_STEP`): the step that ends an episode
returns the next episode's first observation, with the last one in `infos["final_obs"]` and that
step's info in `infos["final_info"]`. `BatchedPerceptionVecEnv` (`make_vec`) is a thin
Stable-Baselines3 `VecEnv` adapter over it, with SB3's auto-reset infos (`terminal_observation`,
`TimeLimit.truncated`).

Every wait on a worker is bounded (`timeout`) and ends early when the worker process dies; a dead
or failed worker is reported as a RuntimeError naming its world, after which the vector env only
closes (the other worlds may be mid-step).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import wait
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvObs,
    VecEnvStepReturn,
)

from ..sim import Frame, make_backend
from .carla_perception_env import CarlaPerceptionEnv, action_space
from .config import CARLA_PORT_SPACING, EnvConfig, world_options
from .emergency_brake import mark_braked, with_brake
from .observation import assemble_observation, observation_space
from .perception_source import (
    GroundTruthPerception,
    PerceivedInWorkers,
    PerceptionInput,
    perception_input,
    what_perception_saw,
)
from .task import DrivingTask, check_action

__all__ = ["CARLA_PORT_SPACING", "BatchedPerceptionVecEnv", "CarlaPerceptionVectorEnv", "make_vec", "world_options"]

CLOSE_GRACE_SECONDS = 5.0  # close() waits this long for workers to exit, then terminates (and kills) them
KILL_WAIT_SECONDS = 5.0  # after SIGKILL, close() waits at most this long for the kernel to reap a worker


@dataclass
class WorldStep:
    """One world's step as its worker sends it: the task's `StepResult` with, instead of the frame,
    what the main process needs of it (`_WorkerWorld.perceived`)."""

    frame: PerceptionInput | dict[str, np.ndarray]
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class _WorkerWorld:
    """A worker's world and driving task, and what each command from the main process does with them."""

    def __init__(self, task: DrivingTask, config: EnvConfig) -> None:
        self.task, self.rng = task, seeding.np_random(None)[0]
        self.ground_truth = GroundTruthPerception(1, config.obs_size) if config.perception == "ground_truth" else None

    def perceived(self, frame: Frame) -> PerceptionInput | dict[str, np.ndarray]:
        """What the main process needs of `frame`: the camera image, for the model's batched pass there;
        or ground truth's observation arrays, made here, in parallel with the other worlds."""
        if self.ground_truth is None:
            return perception_input(frame, "model")
        return {
            key: value[0] for key, value in self.ground_truth.step([perception_input(frame, "ground_truth")]).items()
        }

    def _next_episode(
        self, options: dict[str, Any] | None
    ) -> tuple[PerceptionInput | dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        frame, info = self.task.reset(int(self.rng.integers(2**31 - 1)), options)
        if self.ground_truth is not None:
            self.ground_truth.reset(0)
        return self.perceived(frame), self.task.vector_observation(frame), info

    def reset(self, data: tuple[int | None, dict[str, Any] | None]) -> Any:
        seed, options = data
        if seed is not None:
            self.rng = seeding.np_random(seed)[0]  # as Env.reset(seed=...) seeds np_random
        return self._next_episode(options)

    def step(self, action: np.ndarray) -> Any:
        result = self.task.step(action)
        vectors = self.task.vector_observation(result.frame)
        ended = result.terminated or result.truncated
        sent = WorldStep(
            self.perceived(result.frame),
            result.reward,
            result.terminated,
            result.truncated,
            result.info,
        )
        return sent, vectors, self._next_episode(None) if ended else None  # same-step autoreset, in the worker

    def call(self, data: tuple[str, tuple, dict]) -> Any:
        name, args, kwargs = data
        attr = getattr(self.task if hasattr(self.task, name) else self.task.sim, name)
        return attr(*args, **kwargs) if callable(attr) else attr


def _worker(conn: Any, config: EnvConfig, index: int, max_episode_steps: int | None) -> None:
    """A worker process: world `index` of `config` and its driving task, driven by commands over a pipe."""
    import torch

    torch.set_num_threads(1)  # the main process owns the cores for perception
    task = None
    try:
        task = DrivingTask(
            make_backend(config.backend, **config.world_options(index)),
            **config.task_kwargs(),
            max_episode_steps=max_episode_steps,
        )
        world = _WorkerWorld(task, config)
        handlers: dict[str, Callable[[Any], Any]] = {"reset": world.reset, "step": world.step, "call": world.call}
        conn.send(("ok", None))
        while True:
            cmd, data = conn.recv()
            if cmd == "close":
                break
            conn.send(("ok", handlers[cmd](data)))
    except (KeyboardInterrupt, EOFError):
        pass
    except Exception:  # report to the main process instead of dying silently
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:  # the main process is gone
            pass
    finally:
        if task is not None:
            task.close()
        conn.close()


@dataclass
class WorldSteps:
    """One step of every world, perceived: the per-world view that both vector APIs are built from."""

    observations: dict[str, np.ndarray]  # batched; a world whose episode ended shows its next episode's first
    results: list[WorldStep]
    final_observations: dict[int, dict[str, np.ndarray]]  # world -> last observation of its ended episode
    reset_infos: dict[int, dict[str, Any]]  # world -> info of the episode it started


class CarlaPerceptionVectorEnv(VectorEnv):
    """n `CarlaPerception-v0` worlds stepped in worker processes, perceived in one batch (Gymnasium `VectorEnv`).

    Args:
        num_envs: number of worlds (each in its own worker process).
        config: the env's options as an `EnvConfig`; keyword options override its fields, as for
            `gym.make`. World i gets town `town_index + i` of `split`, and with `backend="carla"`
            the server at `port + 4 * i` (traffic manager 6000 above it).
        render_mode: None or "rgb_array" (`render()` returns one dashboard per world).
        max_episode_steps: truncate episodes after this many steps (None: no limit); `gym.make_vec`
            passes the registered 1000.
        start_method: multiprocessing start method of the workers ("forkserver" keeps the main
            process's OpenGL and torch state out of them).
        timeout: seconds to wait for a world's reply (a dead worker is noticed at once).
        **options: the fields of `EnvConfig` and backend options, as for `gym.make`.

    Autoreset is `AutoresetMode.SAME_STEP` (see the module docstring). `reset(seed=s)` seeds world i
    with s + i, as Gymnasium's own vector envs do.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": CarlaPerceptionEnv.metadata["render_fps"],
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        config: EnvConfig | None = None,
        *,
        render_mode: str | None = None,
        max_episode_steps: int | None = 1000,
        start_method: str = "forkserver",
        timeout: float = 300.0,
        **options: Any,
    ) -> None:
        self.closed = True  # nothing to close until the workers start
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, (int, np.integer))
            or max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be None or an integer >= 1, got {max_episode_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = cfg = EnvConfig.from_kwargs(config, **options)
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.timeout = float(timeout)
        self.single_observation_space = observation_space(cfg.obs_size, cfg.road_user_gaps)
        self.single_action_space = action_space(cfg.discrete)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._failure: str | None = None  # why the vector env is unusable, once a worker failed
        self._tracebacks: dict[int, str] = {}  # the last traceback each world's worker reported
        self._obs: list[dict[str, np.ndarray] | None] = [None] * self.num_envs  # each world's last observation
        # what perception saw in each world, made when rendered (`what_perception_saw`)
        self._seen: list[Callable[[], dict[str, np.ndarray]]] = [dict] * self.num_envs
        # whether the emergency brake (`EnvConfig.emergency_brake`) acts on each world's next step, and acted on its last
        self._brake = np.zeros(self.num_envs, dtype=np.bool_)
        self._braked = np.zeros(self.num_envs, dtype=np.bool_)
        # the model runs here, one batch for every world (a missing weights folder fails before any world
        # starts); ground truth runs in the workers
        self.perception = (
            PerceivedInWorkers() if cfg.perception == "ground_truth" else cfg.make_perception(self.num_envs)
        )
        ctx = mp.get_context(start_method)
        self._conns, self._procs = [], []
        self.closed = False
        try:
            for i in range(self.num_envs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(  # type: ignore[attr-defined]  # typeshed's BaseContext lacks Process
                    target=_worker, args=(child, cfg, i, max_episode_steps), daemon=True, name=f"carla_gym-world-{i}"
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for i in range(self.num_envs):
                self._receive(i)
        except BaseException:
            self.close()
            raise

    # -- pipes ---------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self.closed:
            raise RuntimeError("this vector env is closed; make a new one")
        if self._failure is not None:
            raise RuntimeError(
                f"this vector env is unusable after a worker failed ({self._failure}); close it and make a new one"
            )

    def _fail(self, i: int, message: str) -> RuntimeError:
        """Mark the vector env unusable (other worlds may be mid-command) and build the error for world `i`."""
        self._failure = f"world {i}"
        return RuntimeError(message)

    def _dead(self, i: int) -> RuntimeError:
        """The error for world `i` whose worker process has exited: exit code and last traceback."""
        proc = self._procs[i]
        proc.join(timeout=5.0)  # reap it, so that its exit code is known (its teardown is slow on busy cores)
        code = proc.exitcode
        how = "no exit code yet" if code is None else f"exit code {code}"
        if code is not None and code < 0:
            how += f" (killed by {signal.Signals(-code).name})"
        message = f"world {i}'s worker process (pid {proc.pid}) died with {how}"
        if i in self._tracebacks:
            message += f"; its last traceback:\n{self._tracebacks[i]}"
        else:
            message += "; it reported no error (anything it printed is on this process's stderr)"
        return self._fail(i, message)

    def _send(self, i: int, message: tuple[str, Any]) -> None:
        try:
            self._conns[i].send(message)
        except OSError as err:  # BrokenPipeError, ConnectionResetError: the worker is gone
            raise self._dead(i) from err

    def _receive(self, i: int) -> Any:
        """World `i`'s reply, waiting at most `timeout` seconds and no longer once its process has died."""
        conn, proc = self._conns[i], self._procs[i]
        if not wait([conn, proc.sentinel], timeout=self.timeout):
            raise self._fail(
                i,
                f"world {i} did not answer within {self.timeout:g} s (worker pid {proc.pid} is still "
                f"running); pass a larger timeout= to make_vec or gym.make_vec if its steps are this slow",
            )
        if not conn.poll():  # only the sentinel is ready: the process exited without replying
            raise self._dead(i)
        try:
            status, payload = conn.recv()
        except (EOFError, OSError) as err:
            raise self._dead(i) from err
        if status == "error":
            self._tracebacks[i] = payload
            raise self._fail(i, f"world {i} failed in its worker process:\n{payload}")
        return payload

    # -- worlds and perception: the view both vector APIs are built from ---------------------
    def _perceive(
        self, indices: Sequence[int], frames: Sequence[Any], vectors: Sequence[dict[str, np.ndarray]]
    ) -> None:
        """Run perception on one frame of each world in `indices` and store their observations."""
        streams = None if list(indices) == list(range(self.num_envs)) else list(indices)
        p = self.perception.step(list(frames), streams=streams)
        for row, i in enumerate(indices):
            self._obs[i] = obs = self.config.observe(assemble_observation(p, row, vectors[row]))
            self._brake[i] = self.config.brakes(obs)
            self._seen[i] = partial(what_perception_saw, p, row)

    def _observation(self, i: int) -> dict[str, np.ndarray]:
        """World `i`'s last observation (the first is made by its reset)."""
        obs = self._obs[i]
        if obs is None:
            raise RuntimeError(f"world {i} has no observation yet: call reset() first")
        return obs

    def _batch(self) -> dict[str, np.ndarray]:
        obs = [self._observation(i) for i in range(self.num_envs)]
        return {key: np.stack([o[key] for o in obs]) for key in obs[0]}

    def reset_worlds(
        self, indices: Sequence[int], seeds: Sequence[int | None], options: Sequence[dict[str, Any] | None]
    ) -> list[dict[str, Any]]:
        """Start a new episode in each world of `indices` (seed and options per world); their reset infos."""
        self._check_usable()
        for i, seed, opts in zip(indices, seeds, options, strict=False):
            self._send(i, ("reset", (seed, opts or None)))
        replies = [self._receive(i) for i in indices]
        for i in indices:
            self.perception.reset(i)
            self._braked[i] = False
        frames, vectors, infos = zip(*replies, strict=False)
        self._perceive(indices, frames, vectors)
        return list(infos)

    def step_worlds(self, actions: Any) -> WorldSteps:
        """Step every world with its action; a world whose episode ends starts its next one at once."""
        self._check_usable()
        count = np.shape(actions)[0] if np.ndim(actions) > 0 else None
        if count != self.num_envs:  # checked before any world moves
            got = "a scalar" if count is None else f"{count} actions"
            raise ValueError(f"step needs one action per world: expected {self.num_envs} actions, got {got}")
        checked = [check_action(a, self.config.discrete) for a in actions]  # NaN raises here, before any world moves
        self._braked[:] = self._brake
        for i, action in enumerate(checked):
            self._send(i, ("step", with_brake(action) if self._braked[i] else action))
        replies = [self._receive(i) for i in range(self.num_envs)]
        results = [r[0] for r in replies]
        if self.config.emergency_brake is not None:
            for r, braked in zip(results, self._braked, strict=True):
                r.info["emergency_brake"] = bool(braked)
        self._perceive(range(self.num_envs), [r.frame for r in results], [r[1] for r in replies])
        done = [i for i, r in enumerate(results) if r.terminated or r.truncated]
        final = {i: self._observation(i) for i in done}
        reset_infos = {}
        if done:
            for i in done:
                self.perception.reset(i)
                self._braked[i] = False  # render() shows the next episode's first frame
            restarted = [replies[i][2] for i in done]
            self._perceive(done, [r[0] for r in restarted], [r[1] for r in restarted])
            reset_infos = {i: r[2] for i, r in zip(done, restarted, strict=False)}
        return WorldSteps(self._batch(), results, final, reset_infos)

    # -- Gymnasium VectorEnv API ---------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the worlds: all of them, or those of `options["reset_mask"]` (a bool array of num_envs).

        `seed` is None (each world continues its own generator), an int s (world i gets s + i) or a
        list of one seed (or None) per world; the other options go to every world's reset.
        """
        self._check_usable()
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"seed must be None, an int or one seed per world ({self.num_envs}), got {len(seeds)} seeds"
                )
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            indices = list(range(self.num_envs))
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with at least "
                    f"one True, got {mask!r}"
                )
            indices = [int(i) for i in np.flatnonzero(mask)]
            if any(self._obs[i] is None for i in range(self.num_envs) if i not in indices):
                raise ValueError("options['reset_mask'] needs every world reset once first; call reset() without it")
        infos_list = self.reset_worlds(indices, [seeds[i] for i in indices], [options or None] * len(indices))
        infos: dict[str, Any] = {}
        for i, info in zip(indices, infos_list, strict=False):
            infos = self._add_info(infos, info, i)
        return self._batch(), infos

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every world. A world whose episode ended returns its next episode's first
        observation and reset info; `infos["final_obs"][i]` and `infos["final_info"]` hold the ended one's."""
        steps = self.step_worlds(actions)
        infos: dict[str, Any] = {}
        for i, r in enumerate(steps.results):
            if i in steps.final_observations:
                infos = self._add_info(infos, {"final_obs": steps.final_observations[i], "final_info": r.info}, i)
                infos = self._add_info(infos, steps.reset_infos[i], i)
            else:
                infos = self._add_info(infos, r.info, i)
        rewards = np.array([r.reward for r in steps.results], dtype=np.float64)
        terminated = np.array([r.terminated for r in steps.results], dtype=np.bool_)
        truncated = np.array([r.truncated for r in steps.results], dtype=np.bool_)
        return steps.observations, rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray | None, ...] | None:  # type: ignore[override]  # None for a world without a frame
        """One dashboard per world (as `CarlaPerception-v0`'s) when render_mode is "rgb_array", else None."""
        self._check_usable()
        if self.render_mode != "rgb_array":
            return None
        for i, what in enumerate(self._seen):
            seen = what()
            self._send(
                i, ("call", ("dashboard", (seen.get("labels"), seen.get("depth_m"), self.config.perception), {}))
            )
        pictures = [self._receive(i) for i in range(self.num_envs)]
        return tuple(
            mark_braked(p) if braked and p is not None else p for p, braked in zip(pictures, self._braked, strict=True)
        )

    def call_worlds(self, name: str, indices: Sequence[int], *args: Any, **kwargs: Any) -> list[Any]:
        """Call a method (or read an attribute) of the driving task, else the simulator, of each world in `indices`."""
        self._check_usable()
        for i in indices:
            self._send(i, ("call", (name, args, kwargs)))
        return [self._receive(i) for i in indices]

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method of every world's driving task or simulator, e.g. `call("autopilot_control")`."""
        return tuple(self.call_worlds(name, range(self.num_envs), *args, **kwargs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """An attribute of every world's driving task or simulator, e.g. `get_attr("steps")`."""
        return self.call(name)

    def close_extras(self, **kwargs: Any) -> None:
        """Ask every worker to close its world; terminate, then kill, those still running after a short grace."""
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except OSError:  # that worker is already gone
                pass
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        for proc in self._procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        # A killed process cannot refuse to die, but on busy cores the kernel may take a few seconds to reap it.
        for stop, wait_s in (("terminate", 1.0), ("kill", KILL_WAIT_SECONDS)):
            stragglers = [proc for proc in self._procs if proc.is_alive()]
            for proc in stragglers:
                getattr(proc, stop)()
            for proc in stragglers:
                proc.join(timeout=wait_s)
        for conn in self._conns:
            conn.close()


class BatchedPerceptionVecEnv(VecEnv):
    """A Stable-Baselines3 `VecEnv` over `CarlaPerceptionVectorEnv` (see `make_vec`).

    SB3 semantics: `reset()` returns observations only (seeds from `seed()`, options from
    `set_options()`), `step` four arrays, and a finished world's `info` holds
    `terminal_observation` and `TimeLimit.truncated`.
    """

    def __init__(self, num_envs: int, config: EnvConfig | None = None, **kwargs: Any) -> None:
        self.vector_env = CarlaPerceptionVectorEnv(num_envs, config, **kwargs)
        self._actions: Any = None
        super().__init__(num_envs, self.vector_env.single_observation_space, self.vector_env.single_action_space)

    @property
    def config(self) -> EnvConfig:
        return self.vector_env.config

    @property
    def closed(self) -> bool:
        return self.vector_env.closed

    def reset(self) -> VecEnvObs:
        everyone = range(self.num_envs)
        self.reset_infos = self.vector_env.reset_worlds(everyone, self._seeds, self._options)
        self._reset_seeds()
        self._reset_options()
        return self.vector_env._batch()

    def step_async(self, actions: np.ndarray) -> None:
        self.vector_env._check_usable()
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        actions, self._actions = self._actions, None
        steps = self.vector_env.step_worlds(actions)
        infos = [dict(r.info) for r in steps.results]
        for i, final in steps.final_observations.items():
            r = steps.results[i]
            infos[i]["terminal_observation"] = final
            infos[i]["TimeLimit.truncated"] = r.truncated and not r.terminated
            self.reset_infos[i] = steps.reset_infos[i]
        rewards = np.array([r.reward for r in steps.results], dtype=np.float32)
        dones = np.array([r.terminated or r.truncated for r in steps.results])
        return steps.observations, rewards, dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.vector_env.render() or [None] * self.num_envs)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [self.vector_env.render_mode] * len(list(self._get_indices(indices)))
        return self.vector_env.call_worlds(attr_name, list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError("the worlds of make_vec are configured at construction; set_attr is not supported")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """Call a method of each world's driving task or simulator, e.g. `env_method("autopilot_control")`."""
        return self.vector_env.call_worlds(method_name, list(self._get_indices(indices)), *method_args, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def make_vec(num_envs: int, config: EnvConfig | None = None, **kwargs: Any) -> BatchedPerceptionVecEnv:
    """n `CarlaPerception-v0` worlds with batched perception, as a Stable-Baselines3 VecEnv.

    Arguments are those of `CarlaPerceptionVectorEnv`: an `EnvConfig` and/or its fields as keywords
    (backend, perception, weights, device, engine, camera_size, obs_size, split, reward, discrete, ...
    and backend options), `max_episode_steps` (default 1000), `render_mode`, `start_method` and
    `timeout` (seconds to wait for a world's reply, default 300; a dead worker is noticed at once).
    With `backend="carla"`, world i connects to the server at `port + 4 * i` (traffic manager 6000
    above it). With `split`, world i gets town `town_index + i` of the split (round-robin). Seed with
    `vec.seed(s)` before `reset()`: world i then matches `gym.make("CarlaPerception-v0", ...)` reset
    with seed s + i.
    """
    return BatchedPerceptionVecEnv(num_envs, config, **kwargs)
