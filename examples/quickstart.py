"""Drive `CarlaPerception-v0` on the embedded world with the bundled perception weights.

    python examples/quickstart.py [--timesteps 200] [--perception model|ground_truth] [--out dashboard.png]

The world's autopilot drives (stand-in for your agent); every step the camera frame goes through
the temporal perception model, and the script prints what the agent would see and saves the
dashboard of the last step.
"""

from __future__ import annotations

import argparse

import cv2
import gymnasium as gym

import carla_gym  # noqa: F401  (registers the envs)
from carla_gym.cli import HelpFormatter, deprecated_alias
from carla_gym.env.contracts import control_to_action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--timesteps", type=int, default=200, help="env steps to drive")
    deprecated_alias(parser, "--steps", "--timesteps", "timesteps", int, metavar="N")
    parser.add_argument("--perception", default="model", choices=("model", "ground_truth"))
    parser.add_argument("--out", default="dashboard.png", help="PNG file for the last step's dashboard")
    args = parser.parse_args()

    env = gym.make("CarlaPerception-v0", perception=args.perception, split="test", render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    print({key: (value.shape, value.dtype.name) for key, value in obs.items()})
    episode_return = 0.0
    for step in range(args.timesteps):
        control = env.unwrapped.sim.autopilot_control()
        action = control_to_action(control)
        obs, reward, terminated, truncated, info = env.step(action)
        episode_return += reward
        if terminated or truncated:
            print(f"episode ended at step {step + 1}: {info.get('termination') or 'time limit'}")
            break
    print(
        f"return {episode_return:.1f}, route completion {info['route_completion']:.0%}, "
        f"{info['distance']:.0f} m driven, infractions {info['infractions']}"
    )
    cv2.imwrite(args.out, env.render()[:, :, ::-1])
    print(f"dashboard saved to {args.out}")
    env.close()


if __name__ == "__main__":
    main()
