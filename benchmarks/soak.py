"""Soak test: step `CarlaPerception-v0` for many steps with resets and watch the process's resources.

    python benchmarks/soak.py [--steps 10000] [--every 500] [--perception model] [--reset-every 300]

The autopilot drives (so episodes run their full course: red lights, junctions, route ends), and
the env is also reset every `--reset-every` steps. Every `--every` steps it prints the resident
memory (RSS), open file descriptors and OS threads of this process; at the end, the growth from
the first report to the last and from the middle report to the last. A leak shows as growth that
keeps going in the second half; warm-up (allocator pools, caches) shows as early growth that then
stays flat. Linux only (reads /proc/self).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

import carla_gym  # noqa: F401  (registers the envs)
from carla_gym.env.contracts import control_to_action
from perception.provenance import cpu_description

PROC = Path("/proc/self")


@dataclass
class Sample:
    """Resources of this process after `step` env steps."""

    step: int
    rss_mb: float
    open_files: int
    threads: int
    seconds: float


def sample(step: int, start: float) -> Sample:
    """Read RSS, open file descriptors and OS threads of this process from /proc."""
    status = dict(line.split(":", 1) for line in (PROC / "status").read_text().splitlines() if ":" in line)
    rss_kb = float(status["VmRSS"].split()[0])
    return Sample(
        step, rss_kb / 1024.0, len(os.listdir(PROC / "fd")), int(status["Threads"]), time.perf_counter() - start
    )


def soak(
    steps: int, every: int, perception: str, reset_every: int, camera_size: tuple[int, int], seed: int
) -> list[Sample]:
    """Drive for `steps` env steps and return a resource sample every `every` steps."""
    env = gym.make("CarlaPerception-v0", perception=perception, camera_size=camera_size)
    samples = []
    try:
        env.reset(seed=seed)
        start = time.perf_counter()
        episode_steps, episodes = 0, 1
        for step in range(1, steps + 1):
            _, _, terminated, truncated, _ = env.step(control_to_action(env.unwrapped.autopilot_control()))
            episode_steps += 1
            if terminated or truncated or episode_steps >= reset_every:
                env.reset()
                episode_steps, episodes = 0, episodes + 1
            if step % every == 0:
                s = sample(step, start)
                samples.append(s)
                print(
                    f"  step {s.step:6d}  RSS {s.rss_mb:8.1f} MB  open files {s.open_files:4d}  threads {s.threads:3d}  "
                    f"{s.step / s.seconds:6.1f} steps/s  ({episodes} episodes)",
                    flush=True,
                )
    finally:
        env.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="print a sample every this many steps")
    parser.add_argument("--perception", default="model", choices=["model", "ground_truth"])
    parser.add_argument("--reset-every", type=int, default=300, help="also reset after this many steps of an episode")
    parser.add_argument("--camera-size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not PROC.is_dir():
        parser.error("this benchmark reads /proc/self and runs on Linux only")
    if args.steps < 2 * args.every:
        parser.error("--steps must be at least twice --every (the growth needs two halves)")
    print(
        f"soak: {args.steps} steps of CarlaPerception-v0 ({args.perception} perception, camera "
        f"{args.camera_size[0]}x{args.camera_size[1]}), reset every {args.reset_every} steps or at episode end; "
        f"{cpu_description()}"
    )
    samples = soak(args.steps, args.every, args.perception, args.reset_every, tuple(args.camera_size), args.seed)
    first, middle, last = samples[0], samples[len(samples) // 2], samples[-1]
    for label, a in (("first", first), ("middle", middle)):
        print(
            f"growth from the {label} sample (step {a.step}) to the last (step {last.step}): "
            f"RSS {last.rss_mb - a.rss_mb:+.1f} MB, open files {last.open_files - a.open_files:+d}, "
            f"threads {last.threads - a.threads:+d}"
        )


if __name__ == "__main__":
    main()
