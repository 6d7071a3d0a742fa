"""Frames per second of the embedded world: RGB + semantic + depth with default traffic, and
autopilot steps per second without rendering.

    python benchmarks/embedded_speed.py [--town grid_suburb] [--steps 300]

Each figure is the median over blocks of 25 steps of (autopilot control + world step + render +
read-back of the three images), after a warm-up. Targets (2 CPU cores): >= 200 frames/s
at 128x256 and >= 100 at 256x512.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from carla_gym.sim import make_backend

BLOCK = 25


def measure(town: str, size: tuple[int, int] | None, steps: int, seed: int) -> tuple[float, dict]:
    """Median steps/s of autopilot driving at `size` (None: no rendering)."""
    backend = make_backend("embedded", town=town, size=size or (64, 128), render=size is not None, seed=seed)
    try:
        backend.reset(seed=seed)
        for _ in range(BLOCK):  # warm-up: shader compilation, caches
            backend.step(backend.autopilot_control())
        rates = []
        for _ in range(max(1, steps // BLOCK)):
            t0 = time.perf_counter()
            for _ in range(BLOCK):
                frame = backend.step(backend.autopilot_control())
                if frame.route.distance_left < 5.0:
                    backend.reset()
            rates.append(BLOCK / (time.perf_counter() - t0))
        stats = dict(backend.renderer.stats) if backend.renderer is not None else {}
        return statistics.median(rates), stats
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--town", default="grid_suburb")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"embedded world speed, town {args.town}, default traffic; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    for size, target in (((128, 256), 200.0), ((256, 512), 100.0)):
        fps, stats = measure(args.town, size, args.steps, args.seed)
        verdict = "meets" if fps >= target else "MISSES"
        print(
            f"  RGB+semantic+depth {size[0]}x{size[1]}: {fps:7.1f} frames/s (target >= {target:.0f}: {verdict}); "
            f"last frame {stats.get('draw_calls')} draw calls, {stats.get('chunks_drawn')} chunks"
        )
    fps, _ = measure(args.town, None, args.steps * 3, args.seed)
    print(f"  autopilot without rendering:   {fps:7.1f} steps/s")


if __name__ == "__main__":
    main()
