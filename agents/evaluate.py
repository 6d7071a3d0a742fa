"""Score a driving policy on `CarlaPerception-v0` like the CARLA leaderboard.

    python -m agents.evaluate POLICY [--episodes 10] [--split test] [--perception model|ground_truth]

POLICY is a PPO checkpoint (.zip), `autopilot` (the world's route follower, an upper reference)
or `random`. Prints the summary and writes it as JSON (route completion, collisions per km by
class, lane invasions and red lights per km, driving score with the leaderboard's penalty factors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
from tqdm import tqdm

import carla_gym  # noqa: F401  (registers the envs)

from .policies import Policy, load_policy
from .scoring import EpisodeResult, summarize


def run_episode(env: gym.Env, policy: Policy, seed: int, video_path: Path | None = None) -> EpisodeResult:
    """Drive one episode from `reset(seed=seed)` to its end; optionally write the dashboard as an MP4."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    writer = None
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(policy(obs, env))
        steps += 1
        if video_path is not None:
            picture = env.render()
            if writer is None:
                video_path.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 10, picture.shape[1::-1])
            writer.write(picture[:, :, ::-1])
    if writer is not None:
        writer.release()
    return EpisodeResult(
        route_completion=info["route_completion"],
        distance_m=info["distance"],
        infractions=info["infractions"],
        steps=steps,
        termination=info.get("termination") or info.get("truncation") or ("time_limit" if truncated else None),
    )


def evaluate(policy_name: str, episodes: int = 10, split: str = "test", perception: str = "model", seed: int = 0,
             max_steps: int = 1000, video_dir: Path | None = None, env_kwargs: dict[str, Any] | None = None) -> dict:
    """Run `episodes` seeded episodes (seeds seed, seed+1, ...) and return the leaderboard summary."""
    policy = load_policy(policy_name)
    env = gym.make("CarlaPerception-v0", perception=perception, split=split, max_episode_steps=max_steps,
                   render_mode="rgb_array" if video_dir else None, **(env_kwargs or {}))
    try:
        results = [
            run_episode(env, policy, seed + i, video_dir / f"episode_{seed + i:04d}.mp4" if video_dir else None)
            for i in tqdm(range(episodes), desc=f"evaluating {policy_name}", unit="episode")
        ]
    finally:
        env.close()
    summary = summarize(results)
    summary.update(policy=policy_name, split=split, perception=perception, seed=seed, max_steps=max_steps)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help="PPO checkpoint (.zip), 'autopilot' or 'random'")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the summary")
    parser.add_argument("--video", type=Path, default=None, help="folder for one dashboard MP4 per episode")
    args = parser.parse_args(argv)
    env_kwargs = {"weights": args.weights} if args.weights and args.perception == "model" else {}
    try:
        summary = evaluate(args.policy, args.episodes, args.split, args.perception, args.seed, args.max_steps,
                           args.video, env_kwargs)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"policy {args.policy} on the {args.split} split ({args.perception} perception), {summary['episodes']} episodes:")
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
