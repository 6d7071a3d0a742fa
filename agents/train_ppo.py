"""Train a Stable-Baselines3 PPO driving agent on `CarlaPerception-v0`.

    python -m agents.train_ppo --timesteps 200000 --n-envs 4 --perception model --out runs/ppo

Logs to TensorBoard (`OUT/tb`: SB3's losses plus route completion and infractions per episode),
evaluates on the validation town every `--eval-freq` steps (best policy in `OUT/best_policy`),
and writes the last policy to `OUT/final_policy`. Policy folders hold JSON and safetensors only
(`agents.policy_files`), so loading one runs no code from the file. Training checkpoints
(`OUT/checkpoints/ppo_<steps>_steps.zip`, every `--save-freq` steps and at the end) are SB3 .zip
files, which are unpickled when loaded: `--resume` continues from the newest one, so resume only
from an OUT folder you trust, one this program wrote.

PPO hyperparameters (`agents.hyperparams.ppo`, also RL Baselines3 Zoo's configuration for this
env) follow rl-baselines3-zoo's tuned CarRacing-v2 settings (a continuous-control driving task
from pixels: gSDE exploration, 4 rollouts of 512 steps,
gamma 0.99, GAE 0.95, clip 0.2) with Roach's (Zhang et al., ICCV 2021) entropy bonus of 0.01
for driving; rollouts are shorter than Roach's because episodes here are 1000 steps long.
Two changes for CPU machines: 5 epochs per update instead of the zoo's 10 (the update is a large
share of the wall time on a few cores) and 4 worlds by default, whose perception runs as one batch
(`carla_gym.make_vec`), which steps faster than one world. `--learning-rate` takes a number (a
constant rate) or `lin_<start>` (falling linearly to 0 over the run), as the Zoo writes it.
`--resume` goes on with the same schedule, counts the training time across the runs, and keeps the
best policy until a validation evaluation beats the reward it was saved with.

`--init-from POLICY_FOLDER` starts from another run's policy weights (a fresh optimizer), e.g. one
trained on ground-truth perception and then fine-tuned on model perception, or one from `agents.imitation`.
`--bc-epochs N` follows each PPO update with N passes of behaviour cloning on the rollout's
autopilot labels (`agents.guided_ppo`), which keeps a cloned policy from drifting while PPO tunes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
)
from stable_baselines3.common.vec_env import VecEnv

from carla_gym.cli import HelpFormatter, non_negative_int, positive_int
from perception.provenance import command_line

from .guided_ppo import GuidedPPO
from .hyperparams.ppo import LOG_STD_INIT, PPO_DEFAULTS, learning_rate_schedule
from .policy_files import save_policy
from .training import (
    DrivingInfoCallback,
    DumpTrainLogsCallback,
    SavePolicyCallback,
    TqdmCallback,
    TrainClockCallback,
    add_init_from_arguments,
    add_policy_arguments,
    add_world_arguments,
    best_val_reward,
    env_config,
    init_from_error,
    init_policy_or_exit,
    latest_checkpoint,
    make_vec_env,
    new_model,
    policy_metadata,
    progress_metadata,
)


def learning_rate_text(text: str) -> str:
    """`--learning-rate` as written (kept for the policy's record), once `learning_rate_schedule` reads it."""
    try:
        learning_rate_schedule(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of this program."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.train_ppo", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--timesteps", type=positive_int, default=200_000)
    add_world_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/ppo"))
    parser.add_argument(
        "--eval-freq",
        type=non_negative_int,
        default=20_000,
        help="steps between validation-town evaluations (0: never)",
    )
    parser.add_argument("--eval-episodes", type=positive_int, default=3)
    parser.add_argument("--save-freq", type=positive_int, default=10_000)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in OUT/checkpoints; these SB3 .zip files are "
        "unpickled, which runs any code they hold: resume only from an OUT folder you trust",
    )
    add_policy_arguments(parser)
    add_init_from_arguments(
        parser, "start from this policy folder's weights (e.g. one trained on ground-truth perception)"
    )
    parser.add_argument(
        "--log-std-init",
        type=float,
        default=None,
        help=f"gSDE's initial log std (default {LOG_STD_INIT}; with --init-from: the checkpoint's)",
    )
    parser.add_argument(
        "--bc-epochs",
        type=non_negative_int,
        default=0,
        help="imitation phase after each update: passes of behaviour cloning on the rollout's "
        "autopilot labels (agents.guided_ppo; default 0: plain PPO)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--progress-bar", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar over the steps"
    )
    for name, value in PPO_DEFAULTS.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=f"PPO {name}")
        elif name == "learning_rate":
            parser.add_argument(
                flag,
                type=learning_rate_text,
                default=value,
                help="PPO learning rate: a number (constant) or lin_<number> (falling linearly to 0 over the run)",
            )
        else:
            kind = positive_int if name in ("n_steps", "batch_size", "n_epochs") else type(value)
            parser.add_argument(flag, type=kind, default=value, help=f"PPO {name}")
    return parser


def build_model(
    args: argparse.Namespace, env: VecEnv, resume_from: Path | None, parser: argparse.ArgumentParser
) -> PPO:
    """The model to train: resumed from a checkpoint, or new (PPO, or GuidedPPO with an imitation phase),
    optionally initialised from a policy (--init-from; a bad one closes `env` and exits naming it)."""
    if resume_from is not None:
        algorithm = GuidedPPO if args.bc_epochs > 0 else PPO
        model = algorithm.load(resume_from, env=env, device=args.device, tensorboard_log=str(args.out / "tb"))
        print(f"resuming from {resume_from} at step {model.num_timesteps}")
        return model
    log_std = LOG_STD_INIT if args.log_std_init is None else args.log_std_init
    ppo_kwargs = {name: getattr(args, name) for name in PPO_DEFAULTS}
    model = new_model(
        env,
        args.seed,
        args.device,
        str(args.out / "tb"),
        log_std_init=log_std,
        bc_epochs=args.bc_epochs,
        last_action=args.last_action,
        **ppo_kwargs,
    )
    if args.init_from is not None:
        init_policy_or_exit(model, args, env, parser)
        if args.log_std_init is not None:
            model.policy.log_std.data.fill_(args.log_std_init)
        print(f"policy initialised from {args.init_from}")
    return model


def keep_evaluations(evaluation: EvalCallback, log: Path, episodes: int) -> None:
    """Start `evaluation`'s history from the evaluations a run already logged, so that the resumed run's
    `evaluations.npz` holds them all (SB3 rewrites the file from its own lists). A log with another number
    of episodes per evaluation is started anew: SB3 cannot write evaluations of two sizes to one file."""
    if not log.is_file():
        return
    with np.load(log) as logged:
        if logged["results"].ndim != 2 or logged["results"].shape[1] != episodes:
            return
        evaluation.evaluations_timesteps = [int(t) for t in logged["timesteps"]]
        evaluation.evaluations_results = [list(r) for r in logged["results"]]
        evaluation.evaluations_length = [list(n) for n in logged["ep_lengths"]]


def evaluation_callback(
    args: argparse.Namespace, metadata: dict[str, Any], resumed: bool
) -> tuple[EvalCallback, VecEnv]:
    """Validation-town evaluation every --eval-freq steps, saving each new best policy in OUT/best_policy,
    and its world. A resumed run keeps the best policy it saved until a better one comes."""
    eval_env = make_vec_env(args, "val", 1)
    evaluation = EvalCallback(
        eval_env,
        n_eval_episodes=args.eval_episodes,
        eval_freq=max(args.eval_freq // args.n_envs, 1),
        callback_on_new_best=SavePolicyCallback(args.out / "best_policy", metadata, args.frame_stack),
        log_path=str(args.out / "eval"),
        deterministic=True,
    )
    if resumed:
        evaluation.best_mean_reward = best_val_reward(args.out / "best_policy")
        keep_evaluations(evaluation, args.out / "eval" / "evaluations.npz", args.eval_episodes)
    return evaluation, eval_env


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = command_line(argv, module="agents.train_ppo")
    if (problem := init_from_error(args.init_from, args.trust_pickle)) is not None:
        parser.exit(2, f"error: {problem}\n")
    try:
        env_config(args, "train")  # a bad camera size fails here, before any world starts
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")

    checkpoints = args.out / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if args.resume else None
    if args.resume and resume_from is None:
        parser.exit(2, f"error: --resume given but {checkpoints} holds no ppo_*_steps.zip checkpoint\n")

    env = make_vec_env(args, "train", args.n_envs, expert_action=args.bc_epochs > 0)
    model = build_model(args, env, resume_from, parser)
    metadata = policy_metadata(args, tuple(model.observation_space["semantic"].shape[-2:]), command)  # type: ignore[index]  # a Dict space
    callbacks: list[BaseCallback] = [
        TrainClockCallback(),  # first: the checkpoints below save its count
        DrivingInfoCallback(),
        DumpTrainLogsCallback(),
        CheckpointCallback(max(args.save_freq // args.n_envs, 1), str(checkpoints), name_prefix="ppo"),
    ]
    progress = TqdmCallback() if args.progress_bar else None
    if progress is not None:
        callbacks.append(progress)
    eval_env = None
    if args.eval_freq > 0:
        evaluation, eval_env = evaluation_callback(args, metadata, resumed=resume_from is not None)
        callbacks.append(evaluation)
    try:
        remaining = max(args.timesteps - model.num_timesteps, 0)
        try:
            model.learn(
                remaining,
                callback=callbacks,
                log_interval=1,  # rollout and time statistics after every rollout
                reset_num_timesteps=resume_from is None,
                tb_log_name="ppo",
            )
        except KeyboardInterrupt:
            if progress is not None:
                progress.close()
            saved = checkpoints / f"ppo_{model.num_timesteps}_steps.zip"
            model.save(saved)
            print(
                f"\ninterrupted at step {model.num_timesteps}: saved {saved}; the same command with --resume goes on",
                file=sys.stderr,
            )
            return 130
        model.save(checkpoints / f"ppo_{model.num_timesteps}_steps")  # for --resume
        save_policy(model, args.out / "final_policy", progress_metadata(model, metadata), frame_stack=args.frame_stack)
        print(f"saved {args.out / 'final_policy'} after {model.num_timesteps} steps")
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
