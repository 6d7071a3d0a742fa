"""How well behaviour cloning fits the autopilot's labels: `agents.cloning.fit` against a joint fit.

    python benchmarks/cloning_fit.py runs/bc_a runs/bc_b --epochs 4 --json fit.json

RUN_A and RUN_B are two `agents.imitation` runs (`OUT` folders with `checkpoints/round_<r>.npz`). A
fresh policy of RUN_A's architecture is fitted to all of RUN_A's labels, once with `cloning.fit` and
once with the joint fit it replaced (action and value losses through the shared features extractor,
one gradient clip over all parameters), from the same initial weights and batches. Each is scored on
the last round of RUN_B, whose states the fit never saw: the mean squared error of the mean action
against the autopilot's, over all states and over the moving states 0-5, 5-15 and 15-30 m before a
red light. First it prints the gradient norms of the two losses on the shared extractor for one batch.
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

from agents.cloning import ObservationChunks, fit, mean_action_and_value
from agents.imitation_checkpoint import CHECKPOINT_DIR, RoundData, read_round
from agents.policy_files import build_policy, read_config
from carla_gym.env.observation import RED_LIGHT_RANGE_M, STATE_SPEED_SCALE

RED_BANDS = ((0.0, 5.0), (5.0, 15.0), (15.0, 30.0))  # metres before the stop line
LR, BATCH = 3e-4, 256  # imitation's defaults (PPO's learning rate, --batch-size)


def rounds(run: Path) -> list[RoundData]:
    """Every round's labels of an imitation run, in order."""
    files = sorted((run / CHECKPOINT_DIR).glob("round_*.npz"), key=lambda f: int(f.stem.split("_")[1]))
    if not files:
        raise SystemExit(f"error: {run / CHECKPOINT_DIR} holds no round_<r>.npz")
    return [read_round(f) for f in files]


def fresh_policy(run: Path, seed: int, config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A new policy with RUN's architecture and spaces (its final `bc_policy`), initialised from `seed`;
    `config` in place of that policy.json's content (e.g. with a space changed)."""
    config_file = run / "bc_policy" / "policy.json"
    torch.manual_seed(seed)
    policy = build_policy(read_config(config_file) if config is None else config, config_file)
    policy.optimizer = torch.optim.Adam(policy.parameters(), lr=LR, eps=1e-5)  # as PPO builds it
    return policy


def joint_fit(policy, observations: ObservationChunks, labels, returns, epochs: int) -> None:
    """The fit before `cloning.fit` separated the critic: both losses through the shared extractor, one clip."""
    rng = np.random.default_rng(0)
    policy.set_training_mode(True)
    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(labels), BATCH):
            idx = np.sort(order[start : start + BATCH])
            mean, value = mean_action_and_value(policy, policy.obs_to_tensor(observations.take(idx))[0])
            loss = torch.nn.functional.mse_loss(mean, torch.as_tensor(labels[idx]))
            loss = loss + 0.5 * torch.nn.functional.mse_loss(value, torch.as_tensor(returns[idx]))
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()
    policy.set_training_mode(False)


def gradient_norms(policy, observations: ObservationChunks, labels, returns) -> dict[str, float]:
    """Norm of each loss's gradient on the shared features extractor, for one batch."""
    idx = np.arange(min(BATCH, len(labels)))
    mean, value = mean_action_and_value(policy, policy.obs_to_tensor(observations.take(idx))[0])
    losses = {
        "action": torch.nn.functional.mse_loss(mean, torch.as_tensor(labels[idx])),
        "value": 0.5 * torch.nn.functional.mse_loss(value, torch.as_tensor(returns[idx])),
    }
    extractor = list(policy.features_extractor.parameters())
    norms = {}
    for name, loss in losses.items():
        grads = torch.autograd.grad(loss, extractor, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.stack([g.norm() for g in grads if g is not None]).norm())
    return norms


def mean_actions(policy, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The policy's mean action for every observation in `obs` (batches of 512, no gradients)."""
    n, chunks = len(next(iter(obs.values()))), []
    with torch.no_grad():
        for start in range(0, n, 512):
            batch = policy.obs_to_tensor({k: v[start : start + 512] for k, v in obs.items()})[0]
            chunks.append(mean_action_and_value(policy, batch)[0].cpu().numpy())
    return np.concatenate(chunks)


def held_out_errors(policy, data: RoundData) -> dict[str, float]:
    """Action MSE against the autopilot on `data`, overall and per red-light band (moving states)."""
    obs, labels, _ = data
    pred = mean_actions(policy, obs)
    red, speed = obs["state"][:, 6] * RED_LIGHT_RANGE_M, obs["state"][:, 0] * STATE_SPEED_SCALE
    errors = {"all": float(((pred - labels) ** 2).mean())}
    for lo, hi in RED_BANDS:
        m = (red >= lo) & (red < hi) & (speed > 1.0)
        errors[f"red_{lo:g}_{hi:g}m"] = float(((pred[m] - labels[m]) ** 2).mean()) if m.any() else float("nan")
        errors[f"red_{lo:g}_{hi:g}m_accel_label_vs_policy"] = (
            [float(labels[m, 1].mean()), float(pred[m, 1].mean())] if m.any() else []
        )
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path, help="imitation run whose labels are fitted")
    parser.add_argument("run_b", type=Path, help="imitation run whose last round scores the fits")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = rounds(args.run_a)
    observations = ObservationChunks([d[0] for d in data])
    labels, returns = np.concatenate([d[1] for d in data]), np.concatenate([d[2] for d in data])
    held_out = rounds(args.run_b)[-1]
    norms = gradient_norms(fresh_policy(args.run_a, args.seed), observations, labels, returns)
    print(
        f"gradient norm on the shared extractor, one batch: action loss {norms['action']:.3g}, value loss {norms['value']:.3g}"
    )
    results: dict[str, object] = {"labels": len(labels), "epochs": args.epochs, "gradient_norms": norms}
    for name in ("joint", "critic_apart"):  # the former fit, and `cloning.fit`
        policy = fresh_policy(args.run_a, args.seed)
        started = time.perf_counter()
        if name == "joint":
            joint_fit(policy, observations, labels, returns, args.epochs)
        else:
            fit(SimpleNamespace(policy=policy), observations, labels, returns, args.epochs, BATCH)
        errors = held_out_errors(policy, held_out)
        results[name] = {**errors, "seconds": round(time.perf_counter() - started, 1)}
        bands = ", ".join(f"{lo:g}-{hi:g} m {errors[f'red_{lo:g}_{hi:g}m']:.4f}" for lo, hi in RED_BANDS)
        print(f"{name:13s}held-out action MSE {errors['all']:.4f}; before a red light: {bands}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
