"""Behaviour cloning from the world's autopilot: its actions as labels, and the fit of a PPO policy to them.

Shared by `agents.imitation` (DAgger) and `agents.guided_ppo` (PPO with an imitation phase).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecEnv

from carla_gym.env.contracts import controls_to_actions
from carla_gym.env.observation import SEMANTIC_GROUPS

ROAD_USER_CHANNELS = (list(SEMANTIC_GROUPS).index("vehicle"), list(SEMANTIC_GROUPS).index("pedestrian"))


def expert_actions(vec: VecEnv, infos: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
    """(n_envs, 2) autopilot (steer, acceleration) of every world in its current state.

    `infos`, those of the current observations (`current_infos`), give it without asking the worlds again when
    the env puts it there (`EnvConfig(expert_action=True)`); otherwise each world is asked (one more round trip).
    """
    if infos is not None and all("expert_action" in info for info in infos):
        return np.stack([info["expert_action"] for info in infos]).astype(np.float32)
    return controls_to_actions(vec.env_method("autopilot_control"))


def current_infos(vec: VecEnv, infos: Sequence[dict[str, Any]], dones: np.ndarray) -> list[dict[str, Any]]:
    """The info of each world's current observation: its step's, or the reset's where an episode just ended
    (the vec env reset it in the same step; SB3 keeps that info in `reset_infos`)."""
    reset_infos = vec.unwrapped.reset_infos
    return [reset_infos[i] if done else info for i, (info, done) in enumerate(zip(infos, dones, strict=True))]


def mean_action_and_value(
    policy: ActorCriticPolicy, obs: PyTorchObs, value_shapes_features: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's mean action (the deterministic one) and its value estimate for a batch of observations, with
    one pass of a shared features extractor (`get_distribution` and `predict_values` run it once each).

    `value_shapes_features=False` detaches the value head's input when the extractor is shared, so a loss
    on the value trains only the critic's own layers."""
    features = policy.extract_features(obs)
    pi_features, vf_features = features if isinstance(features, tuple) else (features, features)
    if not value_shapes_features and policy.share_features_extractor:
        vf_features = vf_features.detach()
    mean = policy.action_net(policy.mlp_extractor.forward_actor(pi_features))
    value = policy.value_net(policy.mlp_extractor.forward_critic(vf_features))
    return mean, value.flatten()


def critic_parameters(policy: ActorCriticPolicy) -> list[torch.nn.Parameter]:
    """The parameters only the value estimate uses (its MLP, its head, and its own features extractor if any)."""
    modules = [policy.mlp_extractor.value_net, policy.value_net]
    if not policy.share_features_extractor:
        modules.append(policy.vf_features_extractor)
    return [p for module in modules for p in module.parameters()]


class ObservationChunks:
    """Dict observations kept in the chunks they were collected in (DAgger's rounds) and indexed as one
    array, without concatenating them (which would hold every observation twice while fitting)."""

    def __init__(self, chunks: Sequence[dict[str, np.ndarray]]) -> None:
        self.chunks = list(chunks)
        self.starts = np.cumsum([0, *(len(next(iter(chunk.values()))) for chunk in self.chunks)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The observations at the ascending indices `idx` (into all chunks end to end), in that order."""
        chunk_of = np.searchsorted(self.starts, idx, side="right") - 1
        parts = [(chunk, idx[chunk_of == j] - self.starts[j]) for j, chunk in enumerate(self.chunks)]
        return {k: np.concatenate([chunk[k][local] for chunk, local in parts]) for k in self.chunks[0]}


def label_weights(labels: np.ndarray, brake_weight: float) -> np.ndarray:
    """(n,) weight of each (steer, acceleration) label in the action loss: 1, rising linearly with the brake
    to `brake_weight` at a full brake (acceleration -1).

    Hard braking is rare in the autopilot's driving (a pedestrian stepping out, a vehicle cutting in) and
    decides the collisions; the weight makes those labels count for more against the many of cruising."""
    if brake_weight <= 0:
        raise ValueError(f"brake_weight must be positive, got {brake_weight}")
    brake = np.clip(-labels[:, 1], 0.0, 1.0)
    return (1.0 + (brake_weight - 1.0) * brake).astype(np.float32)


def swap_road_users(semantic: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`semantic` (n, channels, h, w) with the vehicle and pedestrian channels exchanged in the rows `rows`
    (a boolean mask of n), in every stacked copy of the groups (`VecFrameStack` stacks them along the channels).

    Whatever road user stands in the lane, the autopilot stops for it the same way, so a label stays right when
    the two swap: a vehicle ahead becomes a pedestrian ahead to brake for, and pedestrians on the pavement
    vehicles on the pavement to drive past. Vehicles ahead are common in the autopilot's driving, pedestrians
    ahead rare."""
    groups = len(SEMANTIC_GROUPS)
    if semantic.ndim != 4 or semantic.shape[1] % groups:
        raise ValueError(f"semantic observations must be (n, k x {groups}, h, w), got shape {semantic.shape}")
    out = semantic.copy()
    vehicle, pedestrian = ROAD_USER_CHANNELS
    for first in range(0, semantic.shape[1], groups):
        out[rows, first + vehicle] = semantic[rows, first + pedestrian]
        out[rows, first + pedestrian] = semantic[rows, first + vehicle]
    return out


def fit(
    model: PPO,
    observations: dict[str, np.ndarray] | ObservationChunks,
    labels: np.ndarray,
    returns: np.ndarray | None,
    epochs: int,
    batch_size: int,
    value_weight: float = 0.5,
    brake_weight: float = 1.0,
    road_user_swap: float = 0.0,
) -> tuple[float, float]:
    """Fit the policy's mean action to `labels` (MSE, each label weighted by `label_weights`) and, unless
    `returns` is None, its value to `returns`. Each time a sample is drawn, with probability `road_user_swap`
    its vehicle and pedestrian channels are exchanged (`swap_road_users`).

    The value fit does not move what the actor learns: its loss does not reach a features extractor shared
    with the actor, and the actor's and the critic's gradients are clipped apart. Returns in the tens
    give a value loss whose gradient dwarfs the action loss's; through a shared extractor and
    one joint clip it would set the features and shrink every actor step, and the policy would underfit
    the rare labels that matter (braking for a red light). Returns the mean (weighted) action and value
    losses of the last epoch (value 0 without returns)."""
    if not isinstance(observations, ObservationChunks):
        observations = ObservationChunks([observations])
    policy = model.policy
    critic = critic_parameters(policy)
    critic_ids = {id(p) for p in critic}
    actor = [p for p in policy.parameters() if id(p) not in critic_ids]
    policy.set_training_mode(True)
    n = len(labels)
    weights = label_weights(labels, brake_weight)
    rng = np.random.default_rng(0)
    action_loss = value_loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        totals = np.zeros(2)
        for start in range(0, n, batch_size):
            idx = np.sort(order[start : start + batch_size])
            batch = observations.take(idx)
            if road_user_swap > 0:
                batch["semantic"] = swap_road_users(batch["semantic"], rng.random(len(idx)) < road_user_swap)
            obs = policy.obs_to_tensor(batch)[0]
            mean, value = mean_action_and_value(policy, obs, value_shapes_features=False)
            target = torch.as_tensor(labels[idx], device=policy.device)
            w = torch.as_tensor(weights[idx], device=policy.device)
            a_loss = (w * (mean - target).square().mean(dim=1)).sum() / w.sum()
            v_loss = torch.zeros((), device=policy.device)
            if returns is not None:
                v_loss = torch.nn.functional.mse_loss(value, torch.as_tensor(returns[idx], device=policy.device))
            loss = a_loss + value_weight * v_loss
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(actor, 0.5)
            torch.nn.utils.clip_grad_norm_(critic, 0.5)
            policy.optimizer.step()
            totals += (a_loss.item() * len(idx), v_loss.item() * len(idx))
        action_loss, value_loss = totals / n
    policy.set_training_mode(False)
    return float(action_loss), float(value_loss)
