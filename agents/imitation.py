"""Warm-start a PPO driving policy by imitating the world's autopilot (behaviour cloning with DAgger).

    python -m agents.imitation --timesteps 45000 --perception model --out runs/bc
    python -m agents.train_ppo --init-from runs/bc/bc_policy --perception model --out runs/ppo_bc

The autopilot sees the world (privileged, like the expert of "Learning by Cheating", Chen et al.
2019); the student sees only the env's observation, built from perception. In round 1 the autopilot
drives; in later rounds the student drives, and every visited observation is labelled with the
autopilot's action there, so the student also learns to recover from its own mistakes (DAgger,
Ross et al. 2011). After each round the policy's mean action is fitted to all labels so far (MSE)
and its value head to the discounted returns that were observed. The result, `OUT/bc_policy`, is a
policy folder (JSON + safetensors, no pickle) of `train_ppo`'s architecture, so reinforcement learning
can go on from it with `--init-from`. `--init-from` here continues imitation from such a folder:
more DAgger rounds, the student driving. Every round is checkpointed in `OUT/checkpoints`, and `--resume`
goes on from the last one (world i of round r is seeded `seed + r * n_envs + i`, so a resumed run drives
the same episodes as an uninterrupted one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from carla_gym.cli import HelpFormatter, deprecated_alias, non_negative_int, positive_float, positive_int, share
from perception.provenance import command_line

from .cloning import ObservationChunks, current_infos, expert_actions, fit
from .hyperparams.ppo import PPO_DEFAULTS
from .imitation_checkpoint import (
    ImitationCheckpointError,
    ImitationState,
    RoundData,
    has_checkpoint,
    read_state,
    restore,
    save_round,
)
from .policy_files import perception_weights_sha256, save_policy
from .training import (
    add_init_from_arguments,
    add_policy_arguments,
    add_world_arguments,
    env_config,
    init_from_error,
    init_policy_or_exit,
    make_vec_env,
    new_model,
    policy_metadata,
)


def drive(
    vec: VecEnv, model: PPO, steps: int, student_drives: bool, gamma: float, progress: tqdm | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, float]]:
    """Drive `steps` env steps in total; returns observations, autopilot labels, discounted returns and stats.

    Returns of episodes still running at the end are cut there (bootstrapped with 0).
    """
    obs = cast(dict[str, np.ndarray], vec.reset())  # the env's observations are a Dict
    infos: list[dict[str, Any]] = list(vec.unwrapped.reset_infos)
    n = vec.num_envs
    observations: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    labels, rewards, dones = [], [], []
    finished: list[dict] = []
    for _ in range(max(steps // n, 1)):
        expert = expert_actions(vec, infos)
        action = model.predict(obs, deterministic=True)[0] if student_drives else expert
        for k, v in obs.items():
            observations[k].append(v.copy())
        labels.append(expert)
        next_obs, reward, done, step_infos = vec.step(action)
        obs = cast(dict[str, np.ndarray], next_obs)
        infos = current_infos(vec, step_infos, done)
        rewards.append(reward)
        dones.append(done)
        finished += [info for info, d in zip(step_infos, done, strict=False) if d]
        if progress is not None:
            progress.update(n)
    rewards_t, dones_t = np.array(rewards), np.array(dones)
    returns = np.zeros_like(rewards_t)
    running = np.zeros(n, dtype=np.float32)
    for t in reversed(range(len(rewards_t))):
        running = rewards_t[t] + gamma * running * (1.0 - dones_t[t])
        returns[t] = running
    stats = {
        "episodes": len(finished),
        "route_completion": float(np.mean([i["route_completion"] for i in finished])) if finished else float("nan"),
    }
    flat = {k: np.concatenate(v) for k, v in observations.items()}
    return flat, np.concatenate(labels), returns.reshape(-1).astype(np.float32), stats


def fit_all(
    model: PPO,
    data: list[RoundData],
    epochs: int,
    batch_size: int,
    brake_weight: float = 1.0,
    road_user_swap: float = 0.0,
) -> tuple[float, float]:
    """Fit the policy to every round's labels so far (see `cloning.fit`); returns the action and value losses."""
    observations = ObservationChunks([d[0] for d in data])
    labels, returns = np.concatenate([d[1] for d in data]), np.concatenate([d[2] for d in data])
    return fit(
        model,
        observations,
        labels,
        returns,
        epochs,
        batch_size,
        brake_weight=brake_weight,
        road_user_swap=road_user_swap,
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of this program."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.imitation", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=45_000, help="env steps over all rounds")
    deprecated_alias(parser, "--steps", "--timesteps", "timesteps", int, metavar="N")
    parser.add_argument("--rounds", type=int, default=3, help="round 1: the autopilot drives; later: the student")
    parser.add_argument("--epochs", type=positive_int, default=4, help="passes over all labels so far after each round")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument(
        "--brake-weight",
        type=positive_float,
        default=1.0,
        help="weight of a full-brake label in the action loss, against 1 for labels without braking (linear in "
        "between): the rare hard stops, for a pedestrian stepping out, count for more",
    )
    parser.add_argument(
        "--road-user-swap",
        type=share,
        default=0.0,
        metavar="P",
        help="share of the fitted samples whose vehicle and pedestrian channels are exchanged: the autopilot stops "
        "for either the same way, and vehicles ahead are common where pedestrians ahead are rare",
    )
    parser.add_argument(
        "--final-epochs",
        type=non_negative_int,
        default=0,
        help="after the last round, this many more passes over all labels (a finished run can be resumed with "
        "another value: it changes no round)",
    )
    add_world_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/bc"))
    add_policy_arguments(parser)
    add_init_from_arguments(parser, "continue from this policy folder (its student drives every round)")
    parser.add_argument(
        "--resume", action="store_true", help="go on from the last round checkpointed in OUT (the same settings)"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    return parser


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed run must share with the run it goes on from: every option but --resume, --device, --out and
    --final-epochs (which acts after the rounds), and the perception weights by the hash of their content (they may
    have moved, e.g. into the package to be bundled)."""
    ignored = ("resume", "device", "weights", "out", "final_epochs")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ignored}
    return {**settings, "perception_weights_sha256": perception_weights_sha256(args.perception, args.weights)}


def starting_state(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ImitationState:
    """Round 0, or with --resume the state of OUT's checkpoint (refused when its settings differ); a new run into
    an OUT that holds a checkpoint is refused too, so nothing written is lost. Exits naming the problem."""
    settings = run_settings(args)
    try:
        if args.resume:
            return read_state(args.out, settings, {k: parser.get_default(k) for k in settings})
        if has_checkpoint(args.out):
            raise ImitationCheckpointError(
                f"{args.out} holds a run's checkpoints: pass --resume to go on from them, or choose another --out"
            )
    except ImitationCheckpointError as err:
        parser.exit(2, f"error: {err}\n")
    return ImitationState(rounds_done=0, env_steps=0, seconds=0.0, settings=settings)


def train_rounds(
    args: argparse.Namespace,
    vec: VecEnv,
    model: PPO,
    state: ImitationState,
    data: list[RoundData],
    writer: SummaryWriter,
    started: float,
) -> None:
    """The DAgger rounds after `state.rounds_done`: drive, label, fit on all labels so far, checkpoint, log."""
    with tqdm(total=args.timesteps, initial=state.env_steps, desc="imitation", unit="step") as progress:
        for r in range(state.rounds_done, args.rounds):
            student_drives = r > 0 or args.init_from is not None
            vec.seed(args.seed + r * args.n_envs)
            obs, labels, returns, stats = drive(
                vec, model, args.timesteps // args.rounds, student_drives, PPO_DEFAULTS["gamma"], progress
            )
            data.append((obs, labels, returns))
            action_loss, value_loss = fit_all(
                model, data, args.epochs, args.batch_size, args.brake_weight, args.road_user_swap
            )
            state.rounds_done, state.env_steps = r + 1, state.env_steps + len(labels)
            state.seconds = round(time.perf_counter() - started, 1)
            save_round(args.out, data[-1], model.policy, state)
            driver = "student" if student_drives else "autopilot"
            # against env steps, like train_ppo's logs, so agents.learning_curves draws both runs on one axis
            writer.add_scalar("driving/route_completion", stats["route_completion"], state.env_steps)
            writer.add_scalar("imitation/action_mse", action_loss, state.env_steps)
            writer.add_scalar("imitation/value_mse", value_loss, state.env_steps)
            progress.write(
                f"round {r + 1}/{args.rounds} ({driver} drove; {stats['episodes']} episodes finished, "
                f"mean route completion {stats['route_completion']:.0%}): action MSE {action_loss:.4f}, "
                f"value MSE {value_loss:.3f} over {sum(len(d[1]) for d in data)} labels"
            )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = command_line([a for a in given if a != "--resume"], module="agents.imitation")
    if (problem := init_from_error(args.init_from, args.trust_pickle)) is not None:
        parser.exit(2, f"error: {problem}\n")
    if args.rounds < 1 or args.timesteps < args.n_envs * args.rounds:
        parser.exit(
            2,
            f"error: need --rounds >= 1 and --timesteps >= n_envs x rounds, got {args.timesteps} steps, {args.rounds} rounds\n",
        )

    try:
        env_config(args, "train")  # a bad camera size fails here, before any world starts
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    state = starting_state(args, parser)
    vec = make_vec_env(args, "train", args.n_envs, expert_action=True)
    model = new_model(vec, args.seed, args.device, tensorboard_log=None, verbose=0, last_action=args.last_action)
    data: list[RoundData] = []
    if args.resume:
        try:
            data = restore(args.out, state, model.policy)
        except ImitationCheckpointError as err:
            vec.close()
            parser.exit(2, f"error: {err}\n")
        print(f"resuming after round {state.rounds_done}/{args.rounds} ({state.env_steps} env steps)")
    elif args.init_from is not None:
        init_policy_or_exit(model, args, vec, parser)
    writer = SummaryWriter(str(args.out / "tb"))
    started = time.perf_counter() - state.seconds
    try:
        try:
            train_rounds(args, vec, model, state, data, writer, started)
            if args.final_epochs:
                action_loss, _ = fit_all(
                    model, data, args.final_epochs, args.batch_size, args.brake_weight, args.road_user_swap
                )
                writer.add_scalar("imitation/final_action_mse", action_loss, state.env_steps)
                print(f"final fit, {args.final_epochs} passes over all labels: action MSE {action_loss:.4f}")
        except KeyboardInterrupt:
            where = (
                "the final fit" if state.rounds_done == args.rounds else f"round {state.rounds_done + 1}/{args.rounds}"
            )
            print(
                f"\ninterrupted in {where}: {state.rounds_done} rounds are checkpointed in {args.out}; "
                "the same command with --resume goes on after them",
                file=sys.stderr,
            )
            return 130
        metadata = policy_metadata(args, tuple(model.observation_space["semantic"].shape[-2:]), command)  # type: ignore[index]  # a Dict space
        metadata.update(num_timesteps=state.env_steps, train_seconds=round(time.perf_counter() - started, 1))
        save_policy(model, args.out / "bc_policy", metadata, frame_stack=args.frame_stack)
        print(f"saved {args.out / 'bc_policy'}")
    finally:
        writer.close()
        vec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
