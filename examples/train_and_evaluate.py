"""Train a PPO driving agent in a few lines, then score it like the CARLA leaderboard.

    python examples/train_and_evaluate.py [--timesteps 20000] [--perception ground_truth|model]

A short run on ground-truth perception learns to move along the route; real runs use
`python -m agents.train_ppo` (checkpoints, evaluation on the validation town, TensorBoard).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
from stable_baselines3 import PPO

import agents
import carla_gym  # noqa: F401  (registers the envs)
from agents.evaluate import run_episode
from agents.features import PerceptionExtractor
from agents.scoring import summarize
from carla_gym.cli import HelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--perception", default="ground_truth", choices=("model", "ground_truth"))
    args = parser.parse_args()

    env = gym.make("CarlaPerception-v0", perception=args.perception, split="train")
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=512,
        batch_size=128,
        seed=0,
        verbose=1,
        policy_kwargs=dict(features_extractor_class=PerceptionExtractor),
    )
    model.learn(args.timesteps, progress_bar=False)
    agents.save_policy(model, "ppo_quick")  # safetensors + JSON: loads without unpickling anything
    env.close()

    test_env = gym.make("CarlaPerception-v0", perception=args.perception, split="test", render_mode="rgb_array")
    policy = agents.load_policy("ppo_quick")
    episodes = [run_episode(test_env, lambda obs, _: policy.predict(obs)[0], seed=s) for s in range(3)]
    test_env.close()
    summary = summarize(episodes)
    print(
        f"driving score {summary['driving_score']:.3f}, route completion {summary['route_completion']:.0%}, "
        f"collisions/km {summary['collisions_per_km']:.2f}"
    )


if __name__ == "__main__":
    main()
