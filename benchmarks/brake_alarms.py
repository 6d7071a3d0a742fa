"""How often the emergency brake would act on a road user that is not there, and how often where one is.

The world's autopilot drives (it sees the simulator, so every weights folder sees the same frames) and the
emergency brake never acts; at every step each brake variant is asked whether it would brake after the
observation, and the simulator's nearest road user in the ego's corridor (`info["hazards"]["lead"]`) says
whether it should have:

- a false alarm: the variant brakes while the simulator's lead road user lies at least `--clear-m` metres
  beyond the variant's stopping distance (or there is none);
- a needed step: the lead road user is within the stopping distance and the car moves faster than the brake's
  `min_speed`; `caught` is the share of these on which the variant brakes.

Variants are `EmergencyBrakeConfig`s: the default, and the default with fields changed by `--variant NAME
FIELD=VALUE ...` (its own fields or its gaps' `RoadUserGapConfig` fields). Use the validation town; pedestrians crossing ahead
(`--pedestrian-crossings 1`) give the needed steps.

    python benchmarks/brake_alarms.py --weights W --episodes 10 --seed 0 100 200 300 --variant h03 min_height_m=0.3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import carla_gym  # noqa: F401  (registers the envs)
from agents.policies import autopilot_policy
from carla_gym.env.config import EnvConfig
from carla_gym.env.emergency_brake import EmergencyBrakeConfig
from carla_gym.env.observation import STATE_SPEED_SCALE
from carla_gym.env.perception_source import bundled_weights
from perception.provenance import command_line
from perception.weights import weights_record


def parse_variants(specs: list[list[str]]) -> dict[str, EmergencyBrakeConfig]:
    """`{"default": EmergencyBrakeConfig()}` and one brake per `[NAME, FIELD=VALUE, ...]` spec: the default with
    those fields replaced (`EmergencyBrakeConfig.with_changes`). Raises ValueError naming the variant and its change
    that is not one of those fields or values."""
    base = EmergencyBrakeConfig()
    variants = {"default": base}
    for name, *changes in specs:
        try:
            variants[name] = base.with_changes(changes)
        except ValueError as err:
            raise ValueError(f"variant {name!r}: {err}") from None
    return variants


def count_alarms(
    env: gym.Env,
    variants: dict[str, EmergencyBrakeConfig],
    seeds: list[int],
    clear_m: float,
    driver: Callable[[dict[str, np.ndarray], gym.Env], np.ndarray] = autopilot_policy,
) -> dict[str, Any]:
    """Per variant: moving steps, false alarms (and the episodes with any), needed steps and those caught, over
    the episodes `seeds` driven by `driver` (the autopilot)."""
    camera = env.unwrapped.config.camera_geometry()  # type: ignore[attr-defined]
    counts = {name: {"false_alarms": 0, "episodes_with_false_alarms": 0, "needed": 0, "caught": 0} for name in variants}
    moving, min_speed = 0, EmergencyBrakeConfig().min_speed
    for seed in tqdm(seeds, desc="episodes", unit="episode"):
        obs, info = env.reset(seed=seed)
        alarmed = dict.fromkeys(variants, False)
        done = False
        while not done:
            speed = float(obs["state"][0]) * STATE_SPEED_SCALE
            lead = float(info.get("hazards", {}).get("lead", math.inf))
            if speed > min_speed:
                moving += 1
                for name, brake in variants.items():
                    acts = brake.brakes(obs, camera)
                    stopping = brake.stopping_distance(speed)
                    c = counts[name]
                    if acts and lead >= stopping + clear_m:
                        c["false_alarms"] += 1
                        alarmed[name] = True
                    if lead < stopping:
                        c["needed"] += 1
                        c["caught"] += int(acts)
            obs, _, terminated, truncated, info = env.step(driver(obs, env))
            done = terminated or truncated
        for name in variants:
            counts[name]["episodes_with_false_alarms"] += int(alarmed[name])
    for c in counts.values():
        c["false_alarms_per_1000_moving_steps"] = 1000.0 * c["false_alarms"] / max(moving, 1)
        c["caught_share"] = c["caught"] / c["needed"] if c["needed"] else None
    return {"moving_steps": moving, "variants": counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="perception weights folder (default: the bundled lite weights)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="first seeds: --episodes from each")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--pedestrian-crossings", type=float, default=1.0)
    parser.add_argument("--clear-m", type=float, default=5.0, help="false alarm: lead road user this far beyond")
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar="NAME FIELD=VALUE", help="a brake variant"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        variants = parse_variants(args.variant)
    except ValueError as err:
        parser.error(str(err))
    config = EnvConfig.from_kwargs(
        perception="model", split=args.split, weights=args.weights, pedestrian_crossings=args.pedestrian_crossings
    )
    env = gym.make("CarlaPerception-v0", config=config, max_episode_steps=args.max_steps)
    try:
        seeds = [s + i for s in args.seed for i in range(args.episodes)]
        result = count_alarms(env, variants, seeds, args.clear_m)
    finally:
        env.close()
    result.update(
        **weights_record(args.weights or bundled_weights()),
        split=args.split,
        seeds=seeds,
        pedestrian_crossings=args.pedestrian_crossings,
        clear_m=args.clear_m,
        brakes={name: asdict(b) for name, b in variants.items()},
        command=command_line(),
    )
    for name, c in result["variants"].items():
        caught = "-" if c["caught_share"] is None else f"{c['caught_share']:.3f}"
        print(
            f"{name:>10}: false alarms {c['false_alarms']} ({c['false_alarms_per_1000_moving_steps']:.1f} per 1000 "
            f"moving steps, {c['episodes_with_false_alarms']} episodes), needed {c['needed']}, caught {caught}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
