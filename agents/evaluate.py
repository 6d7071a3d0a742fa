"""Score a driving policy on `CarlaPerception-v0` like the CARLA leaderboard.

    python -m agents.evaluate POLICY [--episodes 10] [--split test] [--perception model|ground_truth] [--camera-size H W]
    python -m agents.evaluate POLICY --routes test30 --out docs/results/agents/NAME.json

POLICY is a policy folder (`policy.json` + `policy.safetensors`, as `agents.train_ppo` and
`agents.imitation` write them), `bundled` (the package's own policy, trained on the bundled
perception weights), `autopilot` (the world's route follower, an upper reference) or
`random`. A Stable-Baselines3 .zip is loaded only with `--trust-pickle`: loading one unpickles
Python objects, which can run any code its author put in the file (RecurrentPPO, SAC and TD3 .zip
files from sb3-contrib / RL Baselines3 Zoo load too). Prints the summary and writes it as JSON
(route completion, collisions per km by class, lane invasions and red lights per km, driving score
with the leaderboard's penalty factors). `--routes` picks a named route set (`test10`, `test20`, or
`test30`: both, each also summarised alone) instead of `--episodes`/`--seed`/`--split`; the JSON
also records the command, the evaluation's perception and weights hash, and what the policy records
of its training (command, wall time `train_seconds`, env steps `num_timesteps`). `--video DIR` writes
each episode's dashboard as MP4, `--trace DIR` a CSV of its steps (`TRACE_COLUMNS`).
`--pedestrian-crossings P` sends a pedestrian across the route ahead in a share P of the episodes (the
env's `pedestrian_crossings`), a harder set than the drawn worlds alone. `--emergency-brake` scores the
policy with the env's emergency brake (`EnvConfig.emergency_brake`) under it.

The policy sees what it saw in training: VecNormalize statistics and stacked frames are applied
(recorded in a policy folder, or found in a Zoo run next to the .zip: `ENV/vecnormalize.pkl`,
`ENV/config.yml`), and a recurrent policy's state is carried through an episode and reset at its start.
A policy folder records the perception mode, the perception weights' hash, the camera size and
the observation size it was trained with; evaluating under different ones is refused, naming each
difference, unless `--allow-mismatch` says it is meant (e.g. scoring a ground-truth policy on model perception).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

import carla_gym  # noqa: F401  (registers the envs)
from carla_gym.cli import (
    HelpFormatter,
    add_camera_size,
    add_emergency_brake,
    add_frame_stack,
    add_pedestrian_crossings,
    positive_int,
)
from carla_gym.env.config import EnvConfig
from carla_gym.env.contracts import Truncation
from perception.provenance import command_line

from .policies import ModelDriver, Policy, load_policy
from .policy_files import perception_weights_sha256
from .scoring import ROUTE_SETS, EpisodeResult, summarize

TRACE_COLUMNS = (
    "step",
    "steer",
    "acceleration",
    "reward",
    "speed",
    "route_completion",
    "lead_m",
    "red_light_m",
    "emergency_brake",
    "events",
    "ending",
)


def trace_row(step: int, action: np.ndarray, reward: float, info: dict[str, Any], ending: str = "") -> dict[str, Any]:
    """One step of an episode's trace (`TRACE_COLUMNS`): the action taken, the reward, what `info` says of the
    car and the hazards ahead (the simulator's, which the policy does not see), whether the emergency brake replaced
    the action's acceleration (1 or 0; empty without the brake), and `ending` on the last step."""
    steer, acceleration = np.asarray(action, dtype=np.float64).reshape(-1)[:2]
    hazards = info.get("hazards", {})
    return {
        "step": step,
        "steer": round(float(steer), 4),
        "acceleration": round(float(acceleration), 4),
        "reward": round(float(reward), 4),
        "speed": round(float(info["speed"]), 3),
        "route_completion": round(float(info["route_completion"]), 4),
        "lead_m": round(float(hazards.get("lead", math.inf)), 2),
        "red_light_m": round(float(hazards.get("red_light", math.inf)), 2),
        "emergency_brake": int(info["emergency_brake"]) if "emergency_brake" in info else "",
        "events": ";".join(info.get("events", [])),
        "ending": ending,
    }


def run_episode(
    env: gym.Env, policy: Policy, seed: int, video_path: Path | None = None, trace_path: Path | None = None
) -> EpisodeResult:
    """Drive one episode from `reset(seed=seed)` to its end; optionally write the dashboard as an MP4 and a
    CSV trace of every step (`trace_row`), to see where and why an episode ended.

    A policy with a `reset()` method (a `ModelDriver`) is reset first, so no state crosses episodes."""
    obs, info = env.reset(seed=seed)
    crossing_m = info["scenario"].get("crossing_m")
    env.action_space.seed(seed)
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
    writer = None
    trace: list[dict[str, Any]] = []
    steps, braked, terminated, truncated = 0, 0, False, False
    while not (terminated or truncated):
        action = policy(obs, env)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        braked += bool(info.get("emergency_brake", False))
        ending = (
            info.get("termination") or info.get("truncation") or (Truncation.TIME_LIMIT.value if truncated else None)
        )
        if trace_path is not None:
            trace.append(trace_row(steps, action, float(reward), info, ending or ""))
        if video_path is not None:
            picture = cast(np.ndarray, env.render())  # the env is made with render_mode="rgb_array"
            if writer is None:
                video_path.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), 10, picture.shape[1::-1])
            writer.write(picture[:, :, ::-1])
    if writer is not None:
        writer.release()
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        with trace_path.open("w", newline="") as f:
            table = csv.DictWriter(f, fieldnames=TRACE_COLUMNS)
            table.writeheader()
            table.writerows(trace)
    return EpisodeResult(
        route_completion=info["route_completion"],
        distance_m=info["distance"],
        infractions=info["infractions"],
        steps=steps,
        termination=ending,
        crossing_m=crossing_m,
        emergency_brake_steps=braked,
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
    camera_size: tuple[int, int] | None = None,
    allow_mismatch: bool = False,
    frame_stack: int | None = None,
    vecnormalize: Path | None = None,
    routes: str | None = None,
    trace_dir: Path | None = None,
) -> dict:
    """Run `episodes` seeded episodes (seeds seed, seed+1, ...) and return the leaderboard summary.

    `routes` names a route set of `agents.scoring.ROUTE_SETS` instead: its split and seeds replace
    `split`, `seed` and `episodes`, and the summary holds each of its parts' summary too.

    `trust_pickle` allows a Stable-Baselines3 .zip (and a vecnormalize.pkl) as the policy (unpickled:
    trusted files only). Raises ValueError listing every difference between what the policy was trained
    with and this evaluation's perception, weights, camera and observation size, unless `allow_mismatch`;
    `frame_stack` / `vecnormalize` override what the policy records or its Zoo run holds. `video_dir` and
    `trace_dir` get one dashboard MP4 / one CSV trace (`trace_row`) per episode, named by its seed.
    With the env option `emergency_brake` in `env_kwargs` the summary records the brake's options and each
    episode the steps on which it braked."""
    seeds: Sequence[int] = range(seed, seed + episodes)
    if routes is not None:
        if routes not in ROUTE_SETS:
            raise ValueError(f"unknown route set {routes!r} (known: {', '.join(ROUTE_SETS)})")
        split, seeds = ROUTE_SETS[routes].split, ROUTE_SETS[routes].seeds
    policy = load_policy(
        policy_name,
        trust_pickle=trust_pickle,
        frame_stack=frame_stack,
        vecnormalize=vecnormalize,
        allow_mismatch=allow_mismatch,
    )
    # a policy that reads the road-user gaps gets them: the key is in its observation space
    reads_gaps = isinstance(policy, ModelDriver) and "road_users" in policy.model.observation_space.spaces
    config = EnvConfig.from_kwargs(
        perception=perception,
        split=split,
        camera_size=camera_size,
        **{"road_user_gaps": reads_gaps, **(env_kwargs or {})},
    )
    weights_sha256 = perception_weights_sha256(perception, config.weights)
    env = gym.make(
        "CarlaPerception-v0", config=config, max_episode_steps=max_steps, render_mode="rgb_array" if video_dir else None
    )
    try:
        if isinstance(policy, ModelDriver):
            facts = {
                "perception": perception,
                "camera_size": config.camera_size,
                "obs_size": tuple(env.observation_space["semantic"].shape[-2:]),  # type: ignore[index]  # a Dict space
                "perception_weights_sha256": weights_sha256,
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
            run_episode(
                env,
                policy,
                s,
                video_dir / f"episode_{s:04d}.mp4" if video_dir else None,
                trace_dir / f"episode_{s:04d}.csv" if trace_dir else None,
            )
            for s in tqdm(seeds, desc=f"evaluating {policy_name}", unit="episode")
        ]
    finally:
        env.close()
    summary = summarize(results)
    for detail, s in zip(summary["episodes_detail"], seeds, strict=True):
        detail["seed"] = s
    summary.update(
        policy=policy_name,
        routes=routes,
        split=split,
        perception=perception,
        perception_weights_sha256=weights_sha256,
        seed=seeds[0],
        seeds=list(seeds),
        max_steps=max_steps,
        pedestrian_crossings=config.pedestrian_crossings,
        crossing_distance_m=list(config.crossing_distance_m),
        emergency_brake=None if config.emergency_brake is None else asdict(config.emergency_brake),
        camera_size=list(cast(tuple[int, int], config.camera_size)),  # resolved by EnvConfig
        policy_metadata={k: v for k, v in getattr(policy, "metadata", {}).items() if k != "scores"},
    )
    if routes is not None:
        by_seed = dict(zip(seeds, results, strict=True))
        summary["parts"] = {
            part: part_summary([by_seed[s] for s in ROUTE_SETS[part].seeds]) for part in ROUTE_SETS[routes].parts
        }
    return summary


def part_summary(results: list[EpisodeResult]) -> dict[str, Any]:
    """The headline figures of a part of a route set (its summary without the per-episode detail)."""
    summary = summarize(results)
    return {
        k: summary[k] for k in ("episodes", "route_completion", "driving_score", "collisions_per_km", "distance_km")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.evaluate", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "policy", help="policy folder, 'bundled', 'autopilot' or 'random' (or an SB3 .zip with --trust-pickle)"
    )
    parser.add_argument(
        "--routes",
        choices=tuple(ROUTE_SETS),
        default=None,
        help="a named route set (split and seeds), instead of --episodes, --seed and --split",
    )
    parser.add_argument("--episodes", type=positive_int, default=None, help="episodes (default: 10)")
    parser.add_argument("--split", default=None, choices=("train", "val", "test"), help="town split (default: test)")
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    add_camera_size(
        parser, None, "camera image height and width, as agents.train_ppo's --camera-size (default: the env's)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the first episode (default: 0)")
    parser.add_argument("--max-steps", type=positive_int, default=1000, help="episode time limit in steps")
    add_pedestrian_crossings(
        parser, "share of episodes in which a pedestrian steps out to cross the route ahead (default: none)"
    )
    add_emergency_brake(parser, "the summary records its options and each episode's braked steps")
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="evaluate even if the policy was trained with another perception mode, perception "
        "weights, camera size or observation size (for 'bundled': other than the package's perception weights)",
    )
    add_frame_stack(parser, None, "frames the policy stacks (default: what the policy folder or its Zoo run records)")
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
        "--trace",
        type=Path,
        default=None,
        help="folder for one CSV per episode: every step's action, reward, speed, route completion, the "
        "simulator's hazards ahead, events and how the episode ended",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow POLICY to be a Stable-Baselines3 .zip. Loading one unpickles it, which runs any "
        "code its author put in it: only for files you made or trust",
    )
    args = parser.parse_args(argv)
    command = command_line(argv, module="agents.evaluate")
    if args.routes is not None:
        given = [f"--{name}" for name in ("episodes", "seed", "split") if getattr(args, name) is not None]
        if given:
            parser.exit(2, f"error: --routes {args.routes} fixes the routes; drop {', '.join(given)}\n")
    for flag, folder in (("--video", args.video), ("--trace", args.trace)):
        if folder is not None and folder.exists() and not folder.is_dir():
            parser.exit(2, f"error: {flag} {folder} is a file; give a folder for the per-episode files\n")
    args.episodes = 10 if args.episodes is None else args.episodes
    args.seed = 0 if args.seed is None else args.seed
    args.split = args.split or "test"
    try:
        summary = evaluate(
            args.policy,
            args.episodes,
            args.split,
            args.perception,
            args.seed,
            args.max_steps,
            args.video,
            {
                "weights": args.weights,
                "pedestrian_crossings": args.pedestrian_crossings,
                "crossing_distance_m": args.crossing_distance,
                "emergency_brake": args.emergency_brake,
            },
            args.trust_pickle,
            args.camera_size,
            args.allow_mismatch,
            args.frame_stack,
            args.vecnormalize,
            args.routes,
            args.trace,
        )
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    summary["command"] = command
    where = f"routes {args.routes}" if args.routes else f"the {summary['split']} split"
    print(f"policy {args.policy} on {where} ({args.perception} perception), {summary['episodes']} episodes:")
    print(f"  driving score     {summary['driving_score']:.3f}")
    print(f"  route completion  {summary['route_completion'] * 100:.1f}%")
    print(f"  collisions / km   {summary['collisions_per_km']:.2f}  over {summary['distance_km']:.2f} km")
    for name, rate in summary["infractions_per_km"].items():
        print(f"  {name + ' / km':<28}{rate:.2f}")
    for part, figures in summary.get("parts", {}).items():
        print(
            f"  {part}: route completion {figures['route_completion'] * 100:.1f}%, "
            f"collisions / km {figures['collisions_per_km']:.2f}, driving score {figures['driving_score']:.3f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
