"""Train PPO on Ray RLlib with several env runners, locally or on a Ray cluster.

    pip install "carla-perception-gym[rllib]"
    python examples/rllib_ppo.py --num-env-runners 2 --num-envs-per-env-runner 2 --iterations 5
    python examples/rllib_ppo.py --address auto ...          # on a running Ray cluster (ray start --head)
    python examples/rllib_ppo.py --backend carla --port 2000 ...  # one CARLA server per world, 4 ports apart

Each env runner holds `--num-envs-per-env-runner` worlds; world i (counted over all runners) drives
town i of `--split` round-robin and, with CARLA, connects to port `--port + 4 * i`. Every iteration
prints the mean return and route completion of recent finished episodes ('-' before any ended); the trained
algorithm is saved to `--out` (restore it with `Algorithm.from_checkpoint` after `register_with_ray()`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import ray

from agents.rllib import ppo_config
from carla_gym.cli import HelpFormatter, add_camera_size, deprecated_alias


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--num-env-runners", type=int, default=2, help="env runner processes (0: sample in the driver)")
    parser.add_argument("--num-envs-per-env-runner", type=int, default=1, help="worlds per env runner")
    parser.add_argument("--num-cpus-per-env-runner", type=float, default=1.0)
    parser.add_argument("--perception", default="ground_truth", choices=("model", "ground_truth"))
    add_camera_size(parser, (128, 256), "camera image height and width")
    parser.add_argument("--obs-size", type=int, nargs=2, default=(40, 80), metavar=("H", "W"))
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--backend", default="embedded", choices=("embedded", "carla"))
    parser.add_argument("--host", default="localhost", help="CARLA host (with --backend carla)")
    parser.add_argument("--port", type=int, default=2000, help="CARLA port of world 0 (with --backend carla)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--train-batch-size", type=int, default=2048, help="env steps per iteration")
    parser.add_argument("--minibatch-size", type=int, default=256)
    parser.add_argument("--num-epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--max-steps", type=int, default=1000, help="episode time limit in steps")
    deprecated_alias(parser, "--max-episode-steps", "--max-steps", "max_steps", int, metavar="N")
    parser.add_argument(
        "--address", default=None, help="an existing Ray cluster ('auto' or host:port); default: start a local one"
    )
    parser.add_argument("--out", type=Path, default=Path("rllib_ppo"), help="checkpoint folder (must not exist yet)")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"--out {args.out} already exists; pass a new folder so that no earlier run is overwritten")
    if args.num_env_runners < 0 or args.num_envs_per_env_runner < 1 or args.iterations < 1:
        parser.error("need --num-env-runners >= 0, --num-envs-per-env-runner >= 1 and --iterations >= 1")
    return args


def _show(value: float | None, spec: str) -> str:
    """A metric for the progress line; '-' when no episode has ended to give one."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env_config = {
        "perception": args.perception,
        "camera_size": tuple(args.camera_size),
        "obs_size": tuple(args.obs_size),
        "split": args.split,
        "backend": args.backend,
        "max_episode_steps": args.max_steps,
    }
    if args.backend == "carla":
        env_config.update(host=args.host, port=args.port)
    worlds = max(args.num_env_runners, 1) * args.num_envs_per_env_runner
    config = ppo_config(
        env_config,
        args.num_env_runners,
        args.num_envs_per_env_runner,
        train_batch_size_per_learner=args.train_batch_size,
        minibatch_size=args.minibatch_size,
        num_epochs=args.num_epochs,
        lr=args.lr,
    ).env_runners(
        num_cpus_per_env_runner=args.num_cpus_per_env_runner,
        rollout_fragment_length=math.ceil(args.train_batch_size / worlds),
    )
    ray.init(address=args.address or "local", include_dashboard=False)  # "local": never attach to a stray cluster
    algo = config.build_algo()
    try:
        for _ in range(args.iterations):
            result = algo.train()
            runners = result["env_runners"]
            print(
                f"iter {result['training_iteration']:3d}  steps {result['num_env_steps_sampled_lifetime']:8.0f}  "
                f"episodes {runners.get('num_episodes', 0):4d}  "
                f"return {_show(runners.get('episode_return_mean'), '.2f'):>8}  "
                f"route completion {_show(runners.get('route_completion'), '.1%'):>6}  "
                f"{result['time_this_iter_s']:6.1f} s",
                flush=True,
            )
        checkpoint = algo.save_to_path(str(args.out.resolve()))
        print(f"checkpoint: {checkpoint}")
    finally:
        algo.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
