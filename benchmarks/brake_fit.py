"""What a policy fitted to the autopilot's labels brakes for in states it never saw, with and without the
road-user gaps (`carla_gym.env.road_user_gaps`) as an input.

    python benchmarks/brake_fit.py runs/bc --epochs 4 --json brake_fit.json

RUN is an `agents.imitation` run (`OUT` with `checkpoints/round_<r>.npz` and `bc_policy`). A fresh policy
of RUN's architecture is fitted (`agents.cloning.fit`, from the same initial weights and batches) to the
labels of every round but the last: once on the observations as they are ("as_is"), once with the
nearest vehicle's and pedestrian's gap along the route (divided by the gaps' range) appended to the
`route` vector ("with_gaps"). Each is scored on the last round: the action MSE over all states, and the
autopilot's against the policy's mean acceleration over its hard brakes (acceleration label below
-0.5) and over the hard brakes with a road user within 10 m in the route's corridor. Drives nothing:
minutes on one thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from cloning_fit import BATCH, fresh_policy, mean_actions, rounds

from agents.cloning import ObservationChunks, fit
from agents.imitation_checkpoint import RoundData
from agents.policy_files import read_config
from carla_gym.env.road_user_gaps import RoadUserGapConfig, road_user_gaps

HARD_BRAKE = -0.5  # acceleration label (throttle - brake) below which a state counts as a hard brake
NEAR_M = 10.0
RANGE_M = RoadUserGapConfig().range_m
KINDS = ("hard_brakes", "hard_brakes_road_user_near")


def gaps_of(data: RoundData) -> np.ndarray:
    """(N, 2) road-user gaps (metres) of a round's observations."""
    obs = data[0]
    return road_user_gaps(obs["semantic"], obs["depth"], obs["route"])


def with_gaps(data: RoundData, gaps: np.ndarray) -> RoundData:
    """The round with `gaps / RANGE_M` appended to each `route` vector."""
    obs, labels, returns = data
    route = np.concatenate([obs["route"], gaps / RANGE_M], axis=1).astype(np.float32)
    return {**obs, "route": route}, labels, returns


def fresh_policy_with_gaps(run: Path, seed: int) -> torch.nn.Module:
    """`fresh_policy` whose `route` input is two values longer, for `with_gaps` observations."""
    config = read_config(run / "bc_policy" / "policy.json")
    route = config["observation_space"]["spaces"]["route"]
    route["shape"] = [route["shape"][0] + 2]
    return fresh_policy(run, seed, config)


def scores(policy: torch.nn.Module, data: RoundData, gaps: np.ndarray) -> dict[str, Any]:
    """Action MSE on `data` and the mean acceleration, label vs policy, over its hard brakes (all, and those
    with a road user within NEAR_M: `gaps` are the round's own, whatever the policy reads)."""
    obs, labels, _ = data
    pred = mean_actions(policy, obs)
    hard = labels[:, 1] < HARD_BRAKE
    near = hard & (gaps.min(axis=1) < NEAR_M)
    result: dict[str, Any] = {"all": float(((pred - labels) ** 2).mean())}
    for name, m in zip(KINDS, (hard, near), strict=True):
        result[name] = {
            "states": int(m.sum()),
            "accel_label": float(labels[m, 1].mean()) if m.any() else None,
            "accel_policy": float(pred[m, 1].mean()) if m.any() else None,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="imitation run: fitted on its rounds but the last, scored on that")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = rounds(args.run)
    if len(data) < 2:
        raise SystemExit(f"error: {args.run} has {len(data)} round(s); at least 2 are needed (fit, then score)")
    gaps = [gaps_of(d) for d in data]
    results: dict[str, Any] = {"run": str(args.run), "epochs": args.epochs, "labels": sum(len(d[1]) for d in data[:-1])}
    for name in ("as_is", "with_gaps"):
        fitted = data if name == "as_is" else [with_gaps(d, g) for d, g in zip(data, gaps, strict=True)]
        policy = (fresh_policy if name == "as_is" else fresh_policy_with_gaps)(args.run, args.seed)
        train = fitted[:-1]
        labels, returns = np.concatenate([d[1] for d in train]), np.concatenate([d[2] for d in train])
        observations = ObservationChunks([d[0] for d in train])
        started = time.perf_counter()
        fit(SimpleNamespace(policy=policy), observations, labels, returns, args.epochs, BATCH)
        results[name] = {**scores(policy, fitted[-1], gaps[-1]), "seconds": round(time.perf_counter() - started, 1)}
        r = results[name]
        hard, near = (
            f"{r[k]['accel_label']:+.2f} vs {r[k]['accel_policy']:+.2f}" if r[k]["states"] else "none" for k in KINDS
        )
        print(
            f"{name:10s} held-out action MSE {r['all']:.4f}; mean acceleration, label vs policy: hard brakes {hard}, "
            f"with a road user within {NEAR_M:g} m {near}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
