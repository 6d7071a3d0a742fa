"""Train a Stable-Baselines3 PPO driving agent on `CarlaPerception-v0`.

    python -m agents.train_ppo --timesteps 200000 --n-envs 4 --perception model --out runs/ppo

Logs to TensorBoard (`OUT/tb`: SB3's losses plus route completion and infractions per episode),
evaluates on the validation town every `--eval-freq` steps (best model in `OUT/best_model.zip`),
checkpoints every `--save-freq` steps and resumes from the newest checkpoint with `--resume`.

PPO hyperparameters (defaults below) follow rl-baselines3-zoo's tuned CarRacing-v2 settings
(a continuous-control driving task from pixels: gSDE exploration, 4 rollouts of 512 steps,
gamma 0.99, GAE 0.95, clip 0.2) with Roach's (Zhang et al., ICCV 2021) entropy bonus of 0.01
for driving; rollouts are shorter than Roach's because episodes here are 1000 steps long.
Two changes for CPU machines: 5 epochs per update instead of the zoo's 10 (the update took ~40% of
the wall time on 2 cores) and 4 worlds by default, whose perception runs as one batch
(`carla_gym.make_vec`: 81 env steps/s with the lite model on 2 cores against 46 for one world).

`--init-from CHECKPOINT` starts from another run's policy, e.g. one trained on ground-truth
perception and then fine-tuned on model perception, or one from `agents.imitation`.
`--bc-epochs N` follows each PPO update with N passes of behaviour cloning on the rollout's
autopilot labels (`agents.guided_ppo`), which keeps a cloned policy from drifting while PPO tunes it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import carla_gym  # also registers the envs

from .features import PerceptionExtractor
from .guided_ppo import GuidedPPO

PPO_DEFAULTS = dict(
    learning_rate=3e-4, n_steps=512, batch_size=128, n_epochs=5, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
    ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, use_sde=True, sde_sample_freq=4,
)


# gSDE's initial log std. The action noise is |policy latent| x exp(log_std), so the same value gives
# more noise once the latent has grown (an imitation-trained policy: ~0.7 at -2.0); --log-std-init
# with --init-from resets it, e.g. -4.0 for ~0.1 around a cloned policy.
LOG_STD_INIT = -2.0

# How an episode can end (`info["termination"]` or `info["truncation"]`), logged as fractions of episodes.
ENDINGS = ("route_completed", "collision", "off_road", "off_route", "blocked", "time_limit", "simulator_fault")


class DrivingInfoCallback(BaseCallback):
    """Logs route completion, distance, infractions and how every finished episode ended to TensorBoard."""

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if not done:
                continue
            self.logger.record_mean("driving/route_completion", info["route_completion"])
            self.logger.record_mean("driving/distance_m", info["distance"])
            for name, count in info["infractions"].items():
                self.logger.record_mean(f"driving/{name}", count)
            ended_by = info.get("termination") or info.get("truncation") or "time_limit"
            for reason in ENDINGS:
                self.logger.record_mean(f"driving/ended_by_{reason}", float(ended_by == reason))
        return True


def make_env(perception: str, split: str, town_index: int, camera_size: tuple[int, int], weights: str | None,
             max_steps: int):
    """A thunk building one monitored env."""
    def thunk() -> gym.Env:
        kwargs = {"weights": weights} if weights and perception == "model" else {}
        env = gym.make("CarlaPerception-v0", perception=perception, split=split, town_index=town_index,
                       camera_size=camera_size, max_episode_steps=max_steps, **kwargs)
        return Monitor(env)
    return thunk


def make_vec_env(args: argparse.Namespace, split: str, n_envs: int) -> VecEnv:
    """One env in this process, or `carla_gym.make_vec` worlds (one process each) with batched perception."""
    if n_envs == 1:
        return DummyVecEnv([make_env(args.perception, split, 0, tuple(args.camera_size), args.weights, args.max_steps)])
    kwargs = {"weights": args.weights} if args.weights and args.perception == "model" else {}
    return VecMonitor(carla_gym.make_vec(n_envs, perception=args.perception, split=split,
                                         camera_size=tuple(args.camera_size), max_episode_steps=args.max_steps, **kwargs))


def new_model(env: VecEnv, seed: int, device: str = "auto", tensorboard_log: str | None = None, verbose: int = 1,
              log_std_init: float = LOG_STD_INIT, bc_epochs: int = 0, **ppo_kwargs) -> PPO:
    """A fresh PPO with the PerceptionExtractor policy (hyperparameters: PPO_DEFAULTS, overridden by `ppo_kwargs`).

    `bc_epochs` > 0 gives a `GuidedPPO`: each update is followed by that many passes of behaviour cloning
    on the rollout's autopilot labels."""
    algorithm = GuidedPPO if bc_epochs > 0 else PPO
    if bc_epochs > 0:
        ppo_kwargs["bc_epochs"] = bc_epochs
    return algorithm("MultiInputPolicy", env, seed=seed, device=device, verbose=verbose, tensorboard_log=tensorboard_log,
                     policy_kwargs=dict(features_extractor_class=PerceptionExtractor, log_std_init=log_std_init,
                                        net_arch=dict(pi=[256, 256], vf=[256, 256])),
                     **{**PPO_DEFAULTS, **ppo_kwargs})


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the worlds an agent drives in: count, perception, camera, time limit, seed."""
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    parser.add_argument("--camera-size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--max-steps", type=int, default=1000, help="episode time limit in steps")
    parser.add_argument("--seed", type=int, default=0)


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the most steps in `folder` (CheckpointCallback's `ppo_<steps>_steps.zip`)."""
    found = [(int(m.group(1)), p) for p in folder.glob("ppo_*_steps.zip") if (m := re.search(r"ppo_(\d+)_steps", p.name))]
    return max(found)[1] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.train_ppo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=200_000)
    add_world_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/ppo"))
    parser.add_argument("--eval-freq", type=int, default=20_000, help="steps between validation-town evaluations (0: never)")
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--save-freq", type=int, default=10_000)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this checkpoint's policy weights (e.g. one trained on ground-truth perception)")
    parser.add_argument("--log-std-init", type=float, default=None,
                        help=f"gSDE's initial log std (default {LOG_STD_INIT}; with --init-from: the checkpoint's)")
    parser.add_argument("--bc-epochs", type=int, default=0,
                        help="imitation phase after each update: passes of behaviour cloning on the rollout's "
                             "autopilot labels (agents.guided_ppo; default 0: plain PPO)")
    parser.add_argument("--device", default="auto")
    for name, value in PPO_DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value) if not isinstance(value, bool) else int,
                            default=value, help=f"PPO {name} (default {value})")
    args = parser.parse_args(argv)
    if args.init_from is not None and not args.init_from.is_file():
        parser.exit(2, f"error: --init-from {args.init_from}: no such checkpoint\n")
    if args.bc_epochs < 0:
        parser.exit(2, f"error: --bc-epochs must be >= 0, got {args.bc_epochs}\n")

    checkpoints = args.out / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if args.resume else None
    if args.resume and resume_from is None:
        parser.exit(2, f"error: --resume given but {checkpoints} holds no ppo_*_steps.zip checkpoint\n")

    env = make_vec_env(args, "train", args.n_envs)
    ppo_kwargs = {name: (bool(getattr(args, name)) if isinstance(value, bool) else getattr(args, name))
                  for name, value in PPO_DEFAULTS.items()}
    if resume_from is not None:
        algorithm = GuidedPPO if args.bc_epochs > 0 else PPO
        model = algorithm.load(resume_from, env=env, device=args.device, tensorboard_log=str(args.out / "tb"))
        print(f"resuming from {resume_from} at step {model.num_timesteps}")
    else:
        log_std = LOG_STD_INIT if args.log_std_init is None else args.log_std_init
        model = new_model(env, args.seed, args.device, str(args.out / "tb"), log_std_init=log_std,
                          bc_epochs=args.bc_epochs, **ppo_kwargs)
        if args.init_from is not None:
            model.set_parameters(str(args.init_from), device=args.device)
            if args.log_std_init is not None:
                model.policy.log_std.data.fill_(args.log_std_init)
            print(f"policy initialised from {args.init_from}")
    callbacks: list[BaseCallback] = [
        DrivingInfoCallback(),
        CheckpointCallback(max(args.save_freq // args.n_envs, 1), str(checkpoints), name_prefix="ppo"),
    ]
    eval_env = None
    if args.eval_freq > 0:
        eval_env = make_vec_env(args, "val", 1)
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=args.eval_episodes,
                                      eval_freq=max(args.eval_freq // args.n_envs, 1),
                                      best_model_save_path=str(args.out), log_path=str(args.out / "eval"), deterministic=True))
    try:
        remaining = max(args.timesteps - model.num_timesteps, 0)
        model.learn(remaining, callback=callbacks, reset_num_timesteps=resume_from is None, tb_log_name="ppo")
        model.save(args.out / "final_model")
        print(f"saved {args.out / 'final_model.zip'} after {model.num_timesteps} steps")
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
