"""Building blocks of the agent trainers (`agents.train_ppo`, `agents.imitation`): the env options of a
run, a fresh PPO, starting from a saved policy, what a saved policy records, and the callbacks that log
driving figures, write losses and policies, and show progress."""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack, VecMonitor
from tqdm import tqdm

import carla_gym
from carla_gym.cli import add_camera_size, add_emergency_brake, add_frame_stack, add_pedestrian_crossings, positive_int
from carla_gym.config_cli import ConfigFlags
from carla_gym.env.config import EnvConfig
from carla_gym.env.contracts import ENDINGS, Truncation
from carla_gym.env.reward import RewardConfig

from .guided_ppo import GuidedPPO
from .hyperparams.ppo import LOG_STD_INIT, PPO_DEFAULTS, learning_rate_schedule, policy_kwargs
from .policy_files import (
    CONFIG_FILE,
    copy_weights,
    is_policy_folder,
    load_policy,
    perception_weights_sha256,
    read_config,
    save_policy,
)


class DrivingInfoCallback(BaseCallback):
    """Logs route completion, distance, infractions and how every finished episode ended to TensorBoard."""

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=False):
            if not done:
                continue
            self.logger.record_mean("driving/route_completion", info["route_completion"])
            self.logger.record_mean("driving/distance_m", info["distance"])
            for name, count in info["infractions"].items():
                self.logger.record_mean(f"driving/{name}", count)
            ended_by = info.get("termination") or info.get("truncation") or Truncation.TIME_LIMIT
            for reason in ENDINGS:
                self.logger.record_mean(f"driving/ended_by_{reason}", float(ended_by == reason))
        return True


class DumpTrainLogsCallback(BaseCallback):
    """Writes each update's `train/*` losses as soon as the update is done.

    SB3's on-policy algorithms dump their logs after a rollout but before training on it, so an update's
    losses wait for the next rollout and the last update's (a one-update run's only ones) are never written.
    """

    def _dump(self) -> None:
        if self.logger.name_to_value:
            self.logger.dump(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        self._dump()

    def _on_training_end(self) -> None:
        self._dump()

    def _on_step(self) -> bool:
        return True


class TrainClockCallback(BaseCallback):
    """Keeps `model.train_seconds`, the wall-clock seconds spent training, across resumes.

    SB3 saves a model's attributes with each checkpoint and `PPO.load` restores them, so a resumed run
    goes on counting from where its checkpoint stopped. Put it before the callbacks that save."""

    def _on_training_start(self) -> None:
        self._since = time.perf_counter() - getattr(self.model, "train_seconds", 0.0)

    def _on_step(self) -> bool:
        self.model.train_seconds = time.perf_counter() - self._since  # type: ignore[attr-defined]  # saved with the model
        return True


def progress_metadata(model: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` plus how far training got: env steps and wall-clock seconds so far (`TrainClockCallback`),
    for the leaderboard rows' training cost."""
    seconds = round(getattr(model, "train_seconds", 0.0), 1)
    return {**metadata, "num_timesteps": model.num_timesteps, "train_seconds": seconds}


class SavePolicyCallback(BaseCallback):
    """Writes the model's policy as a policy folder each time it is called (EvalCallback's `callback_on_new_best`),
    with the validation reward that made it the best (`val_mean_reward`, which a resumed run has to beat)."""

    def __init__(self, folder: Path, metadata: dict[str, Any], frame_stack: int = 1) -> None:
        super().__init__()
        self.folder, self.metadata, self.frame_stack = folder, metadata, frame_stack

    def _on_step(self) -> bool:
        metadata = progress_metadata(self.model, self.metadata)
        if isinstance(self.parent, EvalCallback):
            metadata["val_mean_reward"] = float(self.parent.best_mean_reward)
        save_policy(self.model, self.folder, metadata, frame_stack=self.frame_stack)
        return True


def best_val_reward(folder: Path) -> float:
    """The validation reward of the best policy a run saved in `folder` so far (-inf when none is recorded)."""
    if not is_policy_folder(folder):
        return -np.inf
    metadata = read_config(folder / CONFIG_FILE).get("metadata") or {}
    return float(metadata.get("val_mean_reward", -np.inf))


def policy_metadata(args: argparse.Namespace, obs_size: tuple[int, int], command: str) -> dict[str, Any]:
    """What a saved policy was trained on: perception (and its weights' hash), camera and observation sizes, command."""
    weights_sha256 = perception_weights_sha256(args.perception, args.weights)
    config = env_config(args, "train")
    return {
        "perception": args.perception,
        "perception_weights": args.weights,
        "perception_weights_sha256": weights_sha256,
        # EnvConfig resolves the default (None): the perception weights' input size
        "camera_size": list(cast(tuple[int, int], config.camera_size)),
        "obs_size": list(obs_size),
        "reward": reward_config(args).as_dict(),
        "terminate_red_light": args.terminate_red_light,
        "pedestrian_crossings": args.pedestrian_crossings,
        "crossing_distance_m": list(args.crossing_distance),
        "road_user_gaps": args.road_user_gaps,
        "emergency_brake": None if config.emergency_brake is None else asdict(config.emergency_brake),
        "command": command,
    }


def init_policy(model: PPO, source: Path, device: str, trust_pickle: bool) -> None:
    """Copy the weights of a policy folder (or, with `trust_pickle`, of an SB3 .zip) into `model`'s policy."""
    if is_policy_folder(source):
        copy_weights(load_policy(source, device=device), model.policy)
    elif trust_pickle:
        model.set_parameters(str(source), device=device)
    else:
        raise ValueError(
            f"{source} is not a policy folder; an SB3 .zip is unpickled when loaded, which runs any code "
            "it holds: pass --trust-pickle only if you trust the file"
        )


REWARD_FLAGS = ConfigFlags(
    RewardConfig, prefix="reward-", defaults=RewardConfig(), metavars={"speed_term": "{bonus,penalty}"}
)


def reward_config(args: argparse.Namespace) -> RewardConfig:
    """The reward of a run: RewardConfig's defaults with the `--reward-*` flags given on the command line."""
    return RewardConfig(**REWARD_FLAGS.given(args))


def env_config(args: argparse.Namespace, split: str, town_index: int = 0, expert_action: bool = False) -> EnvConfig:
    """The env options of a run: its perception (and weights), camera size, reward and the town split;
    `expert_action` puts the autopilot's action in every info (imitation's labels)."""
    return EnvConfig(
        reward=reward_config(args),
        perception=args.perception,
        weights=args.weights,
        split=split,
        town_index=town_index,
        camera_size=args.camera_size,
        terminate_red_light=args.terminate_red_light,
        expert_action=expert_action,
        pedestrian_crossings=args.pedestrian_crossings if split == "train" else 0.0,
        crossing_distance_m=args.crossing_distance,
        road_user_gaps=args.road_user_gaps,
        emergency_brake=args.emergency_brake,
    )


def make_vec_env(args: argparse.Namespace, split: str, n_envs: int, expert_action: bool = False) -> VecEnv:
    """One env in this process, or `carla_gym.make_vec` worlds (one process each) with batched perception; either
    behind a `VecMonitor`, so a training env and its one-world evaluation env are of the same type (SB3's
    EvalCallback warns otherwise), and behind a `VecFrameStack` of `args.frame_stack` steps when that is over 1."""
    config = env_config(args, split, expert_action=expert_action)
    if n_envs == 1:
        vec: VecEnv = DummyVecEnv(
            [lambda: gym.make("CarlaPerception-v0", config=config, max_episode_steps=args.max_steps)]
        )
    else:
        vec = carla_gym.make_vec(n_envs, config, max_episode_steps=args.max_steps)
    vec = VecMonitor(vec)
    return VecFrameStack(vec, args.frame_stack) if args.frame_stack > 1 else vec


def new_model(
    env: VecEnv,
    seed: int,
    device: str = "auto",
    tensorboard_log: str | None = None,
    verbose: int = 1,
    log_std_init: float = LOG_STD_INIT,
    bc_epochs: int = 0,
    last_action: bool = True,
    **ppo_kwargs,
) -> PPO:
    """A fresh PPO with the PerceptionExtractor policy (hyperparameters: PPO_DEFAULTS, overridden by `ppo_kwargs`).

    `bc_epochs` > 0 gives a `GuidedPPO`: each update is followed by that many passes of behaviour cloning
    on the rollout's autopilot labels. `last_action=False` hides the last action from the policy."""
    algorithm = GuidedPPO if bc_epochs > 0 else PPO
    if bc_epochs > 0:
        ppo_kwargs["bc_epochs"] = bc_epochs
    hyperparameters = {**PPO_DEFAULTS, **ppo_kwargs}
    hyperparameters["learning_rate"] = learning_rate_schedule(hyperparameters["learning_rate"])
    return algorithm(
        "MultiInputPolicy",
        env,
        seed=seed,
        device=device,
        verbose=verbose,
        tensorboard_log=tensorboard_log,
        policy_kwargs=policy_kwargs(log_std_init, last_action),
        **hyperparameters,
    )


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the worlds an agent drives in: count, perception, camera, time limit, seed."""
    parser.add_argument("--n-envs", type=positive_int, default=4)
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    add_camera_size(
        parser, None, "camera image height and width (default: the env's, the perception weights' input size)"
    )
    parser.add_argument("--max-steps", type=positive_int, default=1000, help="episode time limit in steps")
    add_frame_stack(
        parser,
        1,
        "the policy sees the last N observations (SB3's VecFrameStack: images stacked along their channels, "
        "vectors end to end); recorded in the saved policy, which agents.evaluate reads",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_pedestrian_crossings(
        parser,
        "share of training episodes in which a pedestrian steps out to cross the route ahead "
        "(the env's pedestrian_crossings; evaluation episodes keep to the drawn world)",
    )
    parser.add_argument(
        "--road-user-gaps",
        action="store_true",
        help="the observation gets the env's road_users key: how far ahead along the route the nearest vehicle and "
        "pedestrian are, read off perception's maps; recorded in the policy's spaces, which agents.evaluate reads",
    )
    add_emergency_brake(
        parser,
        "in training and evaluation episodes alike; recorded in the saved policy",
    )
    parser.add_argument(
        "--terminate-red-light",
        action="store_true",
        help="end a training episode when the ego runs a red light, as Roach does (evaluation never does)",
    )
    REWARD_FLAGS.add_to(parser.add_argument_group("reward (carla_gym.env.RewardConfig)"))


class TqdmCallback(BaseCallback):
    """A tqdm progress bar over a run's env steps (plain tqdm: SB3's own bar needs `rich`)."""

    bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.locals["total_timesteps"] - self.model.num_timesteps, unit="step")

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (also for a run that ended without `_on_training_end`, e.g. on Ctrl-C)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the most steps in `folder` (CheckpointCallback's `ppo_<steps>_steps.zip`)."""
    found = [
        (int(m.group(1)), p) for p in folder.glob("ppo_*_steps.zip") if (m := re.search(r"ppo_(\d+)_steps", p.name))
    ]
    return max(found)[1] if found else None


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a new policy's network (a resumed PPO run keeps its checkpoint's)."""
    parser.add_argument(
        "--last-action",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the policy sees its last steer and acceleration (in the state observation); --no-last-action hides "
        "them, so an imitating policy cannot learn to repeat its last action",
    )


def add_init_from_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """`--init-from POLICY` (a policy folder) and `--trust-pickle`, which also lets it be an SB3 .zip."""
    parser.add_argument("--init-from", type=Path, default=None, help=help)
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow --init-from to be an SB3 .zip, which is unpickled and runs any code it holds: "
        "only for files you made or trust",
    )


def init_policy_or_exit(model: PPO, args: argparse.Namespace, env: VecEnv, parser: argparse.ArgumentParser) -> None:
    """`init_policy` from `args.init_from`; one that cannot be loaded closes `env` and exits naming the problem."""
    try:
        init_policy(model, args.init_from, args.device, args.trust_pickle)
    except (FileNotFoundError, ValueError) as err:
        env.close()
        parser.exit(2, f"error: --init-from: {err}\n")


def init_from_error(source: Path | None, trust_pickle: bool) -> str | None:
    """Why `--init-from source` cannot be used (no such path; an SB3 .zip without `--trust-pickle`), or None."""
    if source is None:
        return None
    if not source.exists():
        return f"--init-from {source}: no such policy folder"
    if not (is_policy_folder(source) or trust_pickle):
        return (
            f"--init-from {source} is not a policy folder; an SB3 .zip is unpickled when loaded, which runs "
            "any code it holds: add --trust-pickle only if you trust the file"
        )
    return None
