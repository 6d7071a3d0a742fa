"""Env steps per second of `CarlaPerception-v0` vector envs: carla_gym's own against Gymnasium's, side by side.

    python benchmarks/vector_speed.py [--steps 200] [--worlds 1 2 4] [--perception ground_truth model]

For 1, 2 and 4 worlds and each perception mode it times three ways of making the same vector env
with `gym.make_vec`:

- `carla_gym`: the registered vector entry point (`CarlaPerceptionVectorEnv`): worlds in worker
  processes, perception as one batched pass in this process;
- `sync`: Gymnasium's `SyncVectorEnv`: every world and its own batch-1 perception in this process;
- `async`: Gymnasium's `AsyncVectorEnv` (forkserver workers): every world with its own model in
  its own process, each worker capped to one torch thread unless OMP_NUM_THREADS says otherwise.

Every world drives with the same fixed action; episodes that end are reset by the vector env
(part of the time measured). For each number of worlds the three run side by side: they take turns
in blocks of `--block` vector steps, so a change in the machine's load affects them alike; each
figure is the median over blocks, in env steps per second (n per vector step). The `lite` model
is the bundled one.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import torch

import carla_gym  # noqa: F401  (registers the envs)
from perception.provenance import cpu_description

MODES = {
    "carla_gym": dict(vectorization_mode="vector_entry_point"),
    "sync": dict(vectorization_mode="sync"),
    "async": dict(vectorization_mode="async", vector_kwargs={"context": "forkserver"}),
}
ACTION = np.array([0.0, 0.5], dtype=np.float32)


def side_by_side(
    n: int, perception: str, modes: list[str], steps: int, block: int, camera_size: tuple[int, int]
) -> list[float]:
    """Median env steps/s of each mode over blocks of `block` vector steps, the modes taking turns."""
    envs = {
        mode: gym.make_vec(
            "CarlaPerception-v0", num_envs=n, perception=perception, camera_size=camera_size, **MODES[mode]
        )
        for mode in modes
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    actions = np.tile(ACTION, (n, 1))
    try:
        for env in envs.values():
            env.reset(seed=0)
            for _ in range(block):  # warm-up block, untimed
                env.step(actions)
        for _ in range(max(steps // block, 1)):
            for mode, env in envs.items():
                start = time.perf_counter()
                for _ in range(block):
                    env.step(actions)
                rates[mode].append(block * n / (time.perf_counter() - start))
    finally:
        for env in envs.values():
            env.close()
    return [float(np.median(rates[mode])) for mode in modes]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vector_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=200, help="timed vector steps per measurement")
    parser.add_argument("--block", type=int, default=25, help="vector steps per timed block (one block of warm-up)")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--perception", nargs="+", default=["ground_truth", "model"], choices=("ground_truth", "model"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--camera-size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.block < 1 or min(args.worlds) < 1:
        parser.error("need --steps >= 1, --block >= 1 and every --worlds >= 1")
    omp = os.environ.get("OMP_NUM_THREADS")
    print(
        f"CarlaPerception-v0 vector envs, {args.camera_size[0]}x{args.camera_size[1]} camera, {args.steps} timed steps in blocks of {args.block}; "
        f"{cpu_description()}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads in this process, OMP_NUM_THREADS={omp if omp else 'unset'}"
    )
    print(f"env steps/s{'':14}" + "".join(f"{mode:>12}" for mode in args.modes))
    for perception in args.perception:
        for n in args.worlds:
            row = side_by_side(n, perception, args.modes, args.steps, args.block, tuple(args.camera_size))
            print(
                f"{perception:<14}{n} world{'s' if n > 1 else ' '}  " + "".join(f"{v:12.1f}" for v in row), flush=True
            )


if __name__ == "__main__":
    main()
