"""Load a trained driving policy and watch it drive: one test-town episode written as a dashboard MP4.

    python examples/drive_policy.py bundled                       # the package's own policy, no training
    python examples/drive_policy.py runs/ppo_gt/best_policy --perception ground_truth
    python examples/drive_policy.py autopilot --out autopilot.mp4
    python examples/drive_policy.py bundled --emergency-brake     # with the env's emergency brake under it

The dashboard shows the camera, the perception's segmentation and depth, and the speed, route
completion and infractions of the episode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

import carla_gym  # noqa: F401  (registers the envs)
from agents.evaluate import load_policy, run_episode
from carla_gym.cli import HelpFormatter, add_camera_size, add_emergency_brake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "policy", help="policy folder, 'bundled', 'autopilot' or 'random' (or an SB3 .zip with --trust-pickle)"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow an SB3 .zip policy; loading it unpickles it and runs any code it holds: trusted files only",
    )
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="drive 'bundled' even if the package's perception weights are not the ones it was trained on",
    )
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    add_camera_size(parser, None, "camera image height and width (default: the one the policy records, else the env's)")
    parser.add_argument("--seed", type=int, default=0)
    add_emergency_brake(parser, "the dashboard is framed in red while it brakes")
    parser.add_argument("--out", type=Path, default=Path("drive.mp4"))
    args = parser.parse_args()

    try:
        policy = load_policy(args.policy, trust_pickle=args.trust_pickle, allow_mismatch=args.allow_mismatch)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    camera_size = args.camera_size or getattr(policy, "metadata", {}).get("camera_size")
    env = gym.make(
        "CarlaPerception-v0",
        perception=args.perception,
        split="test",
        camera_size=tuple(camera_size) if camera_size else None,
        render_mode="rgb_array",
        emergency_brake=args.emergency_brake,
    )
    result = run_episode(env, policy, seed=args.seed, video_path=args.out)
    env.close()
    print(
        f"{args.out}: {result.steps} steps, route completion {result.route_completion:.0%}, "
        f"ended by {result.termination}, infractions {result.infractions}"
    )


if __name__ == "__main__":
    main()
