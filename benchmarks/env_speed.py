"""Steps per second of `CarlaPerception-v0` (world + perception + task) and of `make_vec`.

    python benchmarks/env_speed.py [--steps 300] [--weights FOLDER]

Measures one env and `carla_gym.make_vec` with 2 and 4 worlds, for `perception="model"` (the
`lite` model; untrained weights unless `--weights`, which does not change the speed) and
`"ground_truth"`, at a 128x256 camera, driving with the world's autopilot. Each figure is the
median over blocks of 25 steps after a warm-up; vector figures count env steps (n per call).
Target (SPEC 11, 2 CPU cores): >= 40 steps/s for one env with `lite` perception.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

import carla_gym
from perception import build_model, save_weights

BLOCK = 25


def autopilot_actions(controls: list) -> np.ndarray:
    return np.array([[c.steer, c.throttle - c.brake] for c in controls], dtype=np.float32)


def single_env_rate(perception: str, weights: str, steps: int) -> float:
    env = gym.make("CarlaPerception-v0", perception=perception, weights=weights, camera_size=(128, 256))
    try:
        env.reset(seed=0)
        sim = env.unwrapped.sim
        rates = []
        for block in range(steps // BLOCK + 1):
            t0 = time.perf_counter()
            for _ in range(BLOCK):
                _, _, terminated, truncated, _ = env.step(autopilot_actions([sim.autopilot_control()])[0])
                if terminated or truncated:
                    env.reset()
            if block:  # the first block is the warm-up
                rates.append(BLOCK / (time.perf_counter() - t0))
        return statistics.median(rates)
    finally:
        env.close()


def vec_env_rate(n: int, perception: str, weights: str, steps: int) -> float:
    vec = carla_gym.make_vec(n, perception=perception, weights=weights, camera_size=(128, 256))
    try:
        vec.seed(0)
        vec.reset()
        rates = []
        for block in range(steps // BLOCK + 1):
            t0 = time.perf_counter()
            for _ in range(BLOCK):
                vec.step(autopilot_actions(vec.env_method("autopilot_control")))
            if block:
                rates.append(n * BLOCK / (time.perf_counter() - t0))
        return statistics.median(rates)
    finally:
        vec.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--weights", default=None, help="lite weights folder (default: untrained lite weights)")
    parser.add_argument("--envs", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or str(save_weights(build_model("lite"), f"{tmp}/lite"))
        print(f"CarlaPerception-v0 speed, 128x256 camera; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        for perception in ("model", "ground_truth"):
            for n in args.envs:
                rate = single_env_rate(perception, weights, args.steps) if n == 1 else vec_env_rate(n, perception, weights, args.steps)
                label = "1 env" if n == 1 else f"make_vec({n})"
                target = "  (target >= 40)" if n == 1 and perception == "model" else ""
                print(f"  {perception:<12} {label:<12} {rate:7.1f} steps/s{target}", flush=True)


if __name__ == "__main__":
    main()
