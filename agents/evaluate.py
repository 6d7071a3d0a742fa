"""Score a driving policy on `CarlaPerception-v0` like the CARLA leaderboard.

    python -m agents.evaluate POLICY [--episodes 10] [--split test] [--perception model|ground_truth] [--camera-size H W]

POLICY is a policy folder (`policy.json` + `policy.safetensors`, as `agents.train_ppo` and
`agents.imitation` write them), `autopilot` (the world's route follower, an upper reference) or
`random`. A Stable-Baselines3 .zip is loaded only with `--trust-pickle`: loading one unpickles
Python objects, which can run any code its author put in the file (RecurrentPPO, SAC and TD3 .zip
files from sb3-contrib / RL Baselines3 Zoo load too). Prints the summary and writes it as JSON
(route completion, collisions per km by class, lane invasions and red lights per km, driving score
with the leaderboard's penalty factors).

The policy sees what it saw in training: VecNormalize statistics and stacked frames are applied
(recorded in a policy folder, or found in a Zoo run next to the .zip: `ENV/vecnormalize.pkl`,
`ENV/config.yml`), and a recurrent policy's state is carried through an episode and reset at its start.
A policy folder records the perception mode, the perception weights' hash, the camera size and
the observation size it was trained with; evaluating under different ones is refused, naming each
difference, unless `--allow-mismatch` says it is meant (e.g. scoring a ground-truth policy on model perception).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

import carla_gym  # noqa: F401  (registers the envs)
from carla_gym.cli import HelpFormatter, add_camera_size
from carla_gym.env.config import EnvConfig
from carla_gym.env.contracts import Truncation

from .policies import ModelDriver, Policy, load_policy
from .policy_files import perception_weights_sha256
from .scoring import EpisodeResult, summarize

CAMERA_SIZE = EnvConfig.camera_size  # the env's and agents.train_ppo's default


def run_episode(env: gym.Env, policy: Policy, seed: int, video_path: Path | None = None) -> EpisodeResult:
    """Drive one episode from `reset(seed=seed)` to its end; optionally write the dashboard as an MP4.

    A policy with a `reset()` method (a `ModelDriver`) is reset first, so no state crosses episodes."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
    writer = None
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(policy(obs, env))
        steps += 1
        if video_path is not None:
            picture = cast(np.ndarray, env.render())  # the env is made with render_mode="rgb_array"
            if writer is None:
                video_path.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), 10, picture.shape[1::-1])
            writer.write(picture[:, :, ::-1])
    if writer is not None:
        writer.release()
    return EpisodeResult(
        route_completion=info["route_completion"],
        distance_m=info["distance"],
        infractions=info["infractions"],
        steps=steps,
        termination=info.get("termination")
        or info.get("truncation")
        or (Truncation.TIME_LIMIT.value if truncated else None),
    )


def training_mismatches(metadata: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """One line per fact the policy recorded about its training that differs from the evaluation's.

    Compares perception mode, perception weights hash, camera size and observation size; facts the
    policy did not record (or that do not apply, like a weights hash under ground truth) are skipped."""

    def plain(value: Any) -> Any:  # JSON gives lists where the evaluation has tuples
        return list(value) if isinstance(value, tuple) else value

    return [
        f"{key}: trained with {json.dumps(plain(metadata[key]))}, evaluating with {json.dumps(plain(value))}"
        for key, value in evaluation.items()
        if metadata.get(key) is not None and value is not None and plain(metadata[key]) != plain(value)
    ]


def evaluate(
    policy_name: str,
    episodes: int = 10,
    split: str = "test",
    perception: str = "model",
    seed: int = 0,
    max_steps: int = 1000,
    video_dir: Path | None = None,
    env_kwargs: dict[str, Any] | None = None,
    trust_pickle: bool = False,
    camera_size: tuple[int, int] = CAMERA_SIZE,
    allow_mismatch: bool = False,
    frame_stack: int | None = None,
    vecnormalize: Path | None = None,
) -> dict:
    """Run `episodes` seeded episodes (seeds seed, seed+1, ...) and return the leaderboard summary.

    `trust_pickle` allows a Stable-Baselines3 .zip (and a vecnormalize.pkl) as the policy (unpickled:
    trusted files only). Raises ValueError listing every difference between what the policy was trained
    with and this evaluation's perception, weights, camera and observation size, unless `allow_mismatch`;
    `frame_stack` / `vecnormalize` override what the policy records or its Zoo run holds."""
    config = EnvConfig.from_kwargs(
        perception=perception, split=split, camera_size=tuple(camera_size), **(env_kwargs or {})
    )
    policy = load_policy(policy_name, trust_pickle=trust_pickle, frame_stack=frame_stack, vecnormalize=vecnormalize)
    env = gym.make(
        "CarlaPerception-v0", config=config, max_episode_steps=max_steps, render_mode="rgb_array" if video_dir else None
    )
    try:
        if isinstance(policy, ModelDriver):
            facts = {
                "perception": perception,
                "camera_size": tuple(camera_size),
                "obs_size": tuple(env.observation_space["semantic"].shape[-2:]),  # type: ignore[index]  # a Dict space
                "perception_weights_sha256": perception_weights_sha256(perception, config.weights),
            }
            mismatches = training_mismatches(policy.metadata, facts)
            if mismatches and not allow_mismatch:
                raise ValueError(
                    f"{policy_name} was trained under other conditions than this evaluation:\n  "
                    + "\n  ".join(mismatches)
                    + "\n(pass --allow-mismatch to evaluate anyway)"
                )
            policy.check_space(cast(gym.spaces.Dict, env.observation_space))
        results = [
            run_episode(env, policy, seed + i, video_dir / f"episode_{seed + i:04d}.mp4" if video_dir else None)
            for i in tqdm(range(episodes), desc=f"evaluating {policy_name}", unit="episode")
        ]
    finally:
        env.close()
    summary = summarize(results)
    summary.update(
        policy=policy_name,
        split=split,
        perception=perception,
        seed=seed,
        max_steps=max_steps,
        camera_size=list(camera_size),
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.evaluate", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("policy", help="policy folder, 'autopilot' or 'random' (or an SB3 .zip with --trust-pickle)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    add_camera_size(parser, CAMERA_SIZE, "camera image height and width, as agents.train_ppo's --camera-size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000, help="episode time limit in steps")
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="evaluate even if the policy was trained with another perception mode, perception "
        "weights, camera size or observation size",
    )
    parser.add_argument(
        "--frame-stack",
        type=int,
        default=None,
        help="frames the policy stacks (default: what the policy folder or its Zoo run records)",
    )
    parser.add_argument(
        "--vecnormalize",
        type=Path,
        default=None,
        help="SB3 vecnormalize.pkl with the observation statistics of training (a pickle: needs "
        "--trust-pickle; default: the one of a Zoo run, next to its .zip)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the summary")
    parser.add_argument("--video", type=Path, default=None, help="folder for one dashboard MP4 per episode")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow POLICY to be a Stable-Baselines3 .zip. Loading one unpickles it, which runs any "
        "code its author put in it: only for files you made or trust",
    )
    args = parser.parse_args(argv)
    if args.frame_stack is not None and args.frame_stack < 1:
        parser.exit(2, f"error: --frame-stack must be >= 1, got {args.frame_stack}\n")
    try:
        summary = evaluate(
            args.policy,
            args.episodes,
            args.split,
            args.perception,
            args.seed,
            args.max_steps,
            args.video,
            {"weights": args.weights},
            args.trust_pickle,
            tuple(args.camera_size),
            args.allow_mismatch,
            args.frame_stack,
            args.vecnormalize,
        )
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(
        f"policy {args.policy} on the {args.split} split ({args.perception} perception), {summary['episodes']} episodes:"
    )
    print(f"  driving score     {summary['driving_score']:.3f}")
    print(f"  route completion  {summary['route_completion'] * 100:.1f}%")
    print(f"  collisions / km   {summary['collisions_per_km']:.2f}  over {summary['distance_km']:.2f} km")
    for name, rate in summary["infractions_per_km"].items():
        print(f"  {name + ' / km':<28}{rate:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
