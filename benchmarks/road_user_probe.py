"""What a policy brakes for: its action with a pedestrian ahead, with the pedestrian erased, and painted as a vehicle.

Each policy drives episodes in which a pedestrian steps out ahead (`pedestrian_crossings=1`). At every step where
the autopilot's lead road user is within `--lead-m` metres and at least `--min-cells` cells of the observation's
pedestrian channel are above one half, the policy's deterministic action is also asked for two edits of the same
observation: the pedestrian channel zeroed, and moved into the vehicle channel; the autopilot's action in the
same state is the reference. A policy that brakes for pedestrians accelerates less as it is than with the
pedestrian erased; one that learned to brake for vehicles only brakes when the pedestrian is painted as one. The policy drives its own actions throughout; ground-truth
perception by default, so that what is probed is the policy, not perception. Use the validation town.

    python benchmarks/road_user_probe.py bundled runs/bc/bc_policy --episodes 10 --seed 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import carla_gym  # noqa: F401  (registers the envs)
from agents.cloning import ROAD_USER_CHANNELS
from agents.policies import ModelDriver, load_policy
from carla_gym.env.contracts import control_to_action
from perception.provenance import command_line

VEHICLE, PEDESTRIAN = ROAD_USER_CHANNELS
EDITS = ("as_is", "pedestrian_erased", "pedestrian_as_vehicle")


def edits(obs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The observation as it is, with the pedestrian channel erased, and with it painted into the vehicle one."""
    erased = {**obs, "semantic": obs["semantic"].copy()}
    erased["semantic"][PEDESTRIAN] = 0
    painted = {**erased, "semantic": erased["semantic"].copy()}
    painted["semantic"][VEHICLE] = np.maximum(obs["semantic"][VEHICLE], obs["semantic"][PEDESTRIAN])
    return dict(zip(EDITS, (obs, erased, painted), strict=True))


def probe(driver: ModelDriver, env: gym.Env, seeds: list[int], lead_m: float, min_cells: int) -> dict[str, Any]:
    """Mean acceleration of each edit over the probed steps of the episodes `seeds`, and the pedestrians hit."""
    accelerations: dict[str, list[float]] = {name: [] for name in (*EDITS, "autopilot")}
    hit = 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        driver.reset()
        done = False
        while not done:
            lead = info.get("hazards", {}).get("lead", np.inf)
            if lead < lead_m and int((obs["semantic"][PEDESTRIAN] > 127).sum()) >= min_cells:
                for name, edited in edits(obs).items():
                    action = driver.model.predict({k: v[None] for k, v in edited.items()}, deterministic=True)[0]
                    accelerations[name].append(float(action[0][1]))
                accelerations["autopilot"].append(float(control_to_action(env.unwrapped.autopilot_control())[1]))
            obs, _, terminated, truncated, info = env.step(driver(obs, env))
            done = terminated or truncated
        hit += int(info["infractions"].get("collision_pedestrian", 0) > 0)
    means = {name: float(np.mean(values)) if values else float("nan") for name, values in accelerations.items()}
    return {"probed_steps": len(accelerations["as_is"]), "mean_acceleration": means, "pedestrians_hit": hit}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policies", nargs="+", help="policy folders or 'bundled'")
    p.add_argument("--episodes", type=int, default=10, help="episodes per policy (default 10)")
    p.add_argument("--seed", type=int, default=100, help="seed of the first episode (default 100)")
    p.add_argument("--split", choices=("train", "val", "test"), default="val", help="towns (default val)")
    p.add_argument("--perception", choices=("ground_truth", "model"), default="ground_truth")
    p.add_argument("--lead-m", type=float, default=20.0, help="probe steps with a road user this close ahead")
    p.add_argument("--min-cells", type=int, default=20, help="... and this many pedestrian cells in view")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if args.episodes < 1:
        p.error(f"--episodes {args.episodes}: drive at least 1")
    env = gym.make("CarlaPerception-v0", perception=args.perception, pedestrian_crossings=1.0, split=args.split)
    seeds = list(range(args.seed, args.seed + args.episodes))
    results: dict[str, Any] = {}
    for name in args.policies:
        driver = load_policy(name, allow_mismatch=True)
        if not isinstance(driver, ModelDriver) or driver.frame_stack != 1 or driver.normalization is not None:
            p.error(f"{name}: probe a saved policy without frame stacking or observation normalization")
        results[name] = probe(driver, env, seeds, args.lead_m, args.min_cells)
        means = results[name]["mean_acceleration"]
        print(
            f"{name}: {results[name]['probed_steps']} steps probed, mean acceleration as it is "
            f"{means['as_is']:+.3f}, pedestrian erased {means['pedestrian_erased']:+.3f}, painted as a vehicle "
            f"{means['pedestrian_as_vehicle']:+.3f}, the autopilot's {means['autopilot']:+.3f}; pedestrians hit {results[name]['pedestrians_hit']} of {len(seeds)}"
        )
    env.close()
    if args.json:
        summary = {"command": command_line(), "split": args.split, "seeds": seeds, "perception": args.perception}
        args.json.write_text(json.dumps({**summary, "policies": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
