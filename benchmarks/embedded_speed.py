"""Frames per second of the embedded world: RGB + semantic + depth with default traffic, and
autopilot steps per second without rendering; with --breakdown, where a rendered step's time goes.

    python benchmarks/embedded_speed.py [--town grid_suburb] [--steps 300] [--breakdown]

Each figure is the median over blocks of 25 steps of (autopilot control + world step + render +
read-back of the three images), after a warm-up. Targets (2 CPU cores): >= 200 frames/s
at 128x256 and >= 100 at 256x512.

--breakdown adds, per image size, the median milliseconds per step of each phase, all measured in
the same steps: `world` (autopilot, physics, traffic and the actor instances: everything outside
the renderer), then the renderer's phases (`carla_gym.sim.embedded.renderer.PHASES`): `submit`
(camera uniforms, chunk culling, instance uploads and draw calls; Mesa's llvmpipe shades vertices
here), `raster` (waiting for fragment shading), `allocate` (the output arrays: the only
post-processing, as images come out top-down in the sensors' formats) and `readback` (RGB, labels
and depth read into them). Timing the phases adds one wait for the rasteriser per frame. On a
shared machine compare the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import cast

from carla_gym.sim import make_backend
from carla_gym.sim.embedded.backend import EmbeddedBackend
from carla_gym.sim.embedded.renderer import PHASES
from perception.provenance import cpu_description

BLOCK = 25


def measure(town: str, size: tuple[int, int] | None, steps: int, seed: int) -> tuple[float, dict]:
    """Median steps/s of autopilot driving at `size` (None: no rendering)."""
    backend = cast(
        EmbeddedBackend, make_backend("embedded", town=town, size=size or (64, 128), render=size is not None, seed=seed)
    )
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


def breakdown(town: str, size: tuple[int, int], steps: int, seed: int) -> dict[str, float]:
    """Median seconds per rendered step of `world` and of each renderer phase, over the same `steps` steps."""
    backend = cast(EmbeddedBackend, make_backend("embedded", town=town, size=size, seed=seed))
    try:
        backend.reset(seed=seed)
        for _ in range(BLOCK):
            backend.step(backend.autopilot_control())
        renderer = backend.renderer
        assert renderer is not None
        renderer.timings = {}
        samples: dict[str, list[float]] = {k: [] for k in ("step", "world", *PHASES)}
        for _ in range(steps):
            t0 = time.perf_counter()
            frame = backend.step(backend.autopilot_control())
            total = time.perf_counter() - t0
            samples["step"].append(total)
            samples["world"].append(total - sum(renderer.timings.values()))
            for phase in PHASES:
                samples[phase].append(renderer.timings[phase])
            if frame.route.distance_left < 5.0:
                backend.reset()
        return {k: statistics.median(v) for k, v in samples.items()}
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--town", default="grid_suburb")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown", action="store_true", help="also time the phases of a rendered step")
    args = parser.parse_args()
    print(f"embedded world speed, town {args.town}, default traffic; {cpu_description()}")
    sizes = (((128, 256), 200.0), ((256, 512), 100.0))
    for size, target in sizes:
        fps, stats = measure(args.town, size, args.steps, args.seed)
        verdict = "meets" if fps >= target else "MISSES"
        print(
            f"  RGB+semantic+depth {size[0]}x{size[1]}: {fps:7.1f} frames/s (target >= {target:.0f}: {verdict}); "
            f"last frame {stats.get('draw_calls')} draw calls, {stats.get('chunks_drawn')} chunks"
        )
    fps, _ = measure(args.town, None, args.steps * 3, args.seed)
    print(f"  autopilot without rendering:   {fps:7.1f} steps/s")
    if args.breakdown:
        names = ("world", *PHASES)
        print("  median ms per rendered step (share of the step):")
        print("    size     " + "".join(f"{n:>17s}" for n in names) + f"{'step':>10s}")
        for size, _ in sizes:
            med = breakdown(args.town, size, args.steps, args.seed)
            cells = "".join(f"{med[n] * 1e3:9.3f} ({med[n] / med['step']:4.0%})" for n in names)
            print(f"    {size[0]}x{size[1]:<4d}{cells}{med['step'] * 1e3:10.3f}")


if __name__ == "__main__":
    main()
