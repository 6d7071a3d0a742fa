"""How much exploration noise a PPO policy's gSDE puts on its actions, checkpoint by checkpoint.

    python benchmarks/policy_noise.py runs/ppo/checkpoints/ppo_10000_steps.zip runs/ppo/checkpoints/ppo_250000_steps.zip

gSDE (SB3's `use_sde`) draws a noise matrix and adds `latent @ noise` to the mean action, so the
action's standard deviation is about |policy latent| x exp(log_std): it grows with the policy's
latent features even when `log_std` does not move. This drives `--steps` steps of the validation
town with the autopilot (ground-truth perception, the checkpoints' observation size) and prints,
per checkpoint, exp(log_std) averaged over its entries, the median latent norm and the median
standard deviation of each action (steer, acceleration; the action range is [-1, 1]) over those
observations. Checkpoints are SB3 .zip files, which are unpickled when loaded: pass only your own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO

import carla_gym  # noqa: F401  (registers the env)
from agents.policies import load_sb3
from carla_gym.env.contracts import controls_to_actions


def autopilot_observations(steps: int, obs_size: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """`steps` observations of the validation town driven by the autopilot, stacked per key."""
    env = gym.make("CarlaPerception-v0", perception="ground_truth", split="val", obs_size=obs_size)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(steps):
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(controls_to_actions([env.unwrapped.autopilot_control()])[0])
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return {k: np.stack([o[k] for o in seen]) for k in seen[0]}


def noise(model: PPO, observations: dict[str, np.ndarray]) -> dict[str, float | list[float]]:
    """exp(log_std), the latent norm and the action standard deviations of `model` on `observations`."""
    policy = model.policy
    obs = policy.obs_to_tensor(observations)[0]
    with torch.no_grad():
        latent = policy.mlp_extractor.forward_actor(policy.extract_features(obs))
        std = policy.get_distribution(obs).distribution.stddev
        exp_log_std = policy.log_std.exp().mean()
    return {
        "exp_log_std": float(exp_log_std),
        "latent_norm": float(latent.norm(dim=1).median()),
        "action_std": [round(float(s), 3) for s in std.median(dim=0).values],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="SB3 PPO .zip files of a gSDE run (yours only)")
    parser.add_argument("--steps", type=int, default=300, help="autopilot steps to measure on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if missing := [str(path) for path in args.checkpoints if not path.is_file()]:
        parser.error(f"no such checkpoint: {', '.join(missing)}")
    torch.set_num_threads(1)
    models = [load_sb3(path, "cpu") for path in args.checkpoints]
    size = models[0].observation_space["semantic"].shape[-2:]  # type: ignore[index]  # a Dict space
    observations = autopilot_observations(args.steps, tuple(size), args.seed)
    rows = {
        str(path): {"num_timesteps": m.num_timesteps, **noise(m, observations)}
        for path, m in zip(args.checkpoints, models, strict=True)
    }
    print(f"{'env steps':>10} {'exp(log_std)':>12} {'|latent|':>9}  action std (steer, acceleration)")
    for row in rows.values():
        print(f"{row['num_timesteps']:>10} {row['exp_log_std']:>12.3f} {row['latent_norm']:>9.2f}  {row['action_std']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"steps": args.steps, "seed": args.seed, "checkpoints": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
