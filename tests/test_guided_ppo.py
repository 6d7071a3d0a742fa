"""GuidedPPO: autopilot labels line up with the rollout buffer, and the imitation phase pulls the policy to them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from test_agents import TINY

import agents
from agents import train_ppo
from agents.guided_ppo import GuidedPPO
from carla_gym.sim import Control


class CounterEnv(gym.Env):
    """Observation: a step counter that starts at 10 x the episode number; the 'autopilot' steers counter / 100.

    Episodes last 5 steps, so a rollout crosses auto-resets; a label off by one step would not match."""

    observation_space = gym.spaces.Dict({"state": gym.spaces.Box(0.0, 1000.0, (1,), np.float32)})
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, offset: int = 0) -> None:
        self.episode, self.t, self.offset = 0, 0, offset

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.array([self.offset + 10 * self.episode + self.t], np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 5, False, {}

    def autopilot_control(self) -> Control:
        return Control(steer=float(self._obs()["state"][0]) / 1000.0)


class InfoCounterEnv(CounterEnv):
    """CounterEnv that puts the autopilot's action in every info, as `EnvConfig(expert_action=True)` does, and
    answers no direct question: the labels must come from the infos."""

    def reset(self, seed=None, options=None):
        obs, _ = super().reset(seed=seed)
        return obs, {"expert_action": self._expert()}

    def step(self, action):
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, {"expert_action": self._expert()}

    def _expert(self) -> np.ndarray:
        return np.array([float(self._obs()["state"][0]) / 1000.0, 0.0], np.float32)

    def autopilot_control(self) -> Control:
        raise AssertionError("the label was asked of the world, not read from the info")


def _model(algorithm, env_class=CounterEnv, **kwargs):
    env = DummyVecEnv([lambda: env_class(0), lambda: env_class(500)])
    return algorithm(
        "MultiInputPolicy", env, n_steps=12, batch_size=12, n_epochs=1, seed=0, learning_rate=1e-3, **kwargs
    )


def _action_mse(model, labels: np.ndarray) -> float:
    """MSE between the policy's mean action on the last rollout's observations and `labels`."""
    obs = model.rollout_buffer.observations
    mean = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.mean.detach().numpy()
    return float(np.mean((mean - labels) ** 2))


@pytest.mark.parametrize("env_class", [CounterEnv, InfoCounterEnv])
def test_labels_match_the_observations_they_were_taken_at(env_class):
    model = _model(GuidedPPO, env_class, bc_epochs=1)
    model.learn(48)
    state = model.rollout_buffer.observations["state"][:, 0]  # flattened by train(), env by env
    labels = model._expert.flat()
    assert labels.shape == (24, 2)
    np.testing.assert_allclose(labels[:, 0] * 1000.0, state, atol=1e-3)
    np.testing.assert_array_equal(labels[:, 1], 0.0)  # throttle - brake


def test_imitation_phase_pulls_the_policy_to_the_labels():
    guided = _model(GuidedPPO, bc_epochs=40)
    guided.learn(24)
    plain = _model(PPO)
    plain.learn(24)
    labels = guided._expert.flat()  # the env ignores actions, so both rollouts visited the same states
    np.testing.assert_array_equal(
        plain.rollout_buffer.observations["state"], guided.rollout_buffer.observations["state"]
    )
    assert _action_mse(guided, labels) < 0.2 * _action_mse(plain, labels)


def test_train_ppo_with_imitation_phase_saves_a_plain_ppo_checkpoint(tmp_path):
    out = tmp_path / "guided"
    assert train_ppo.main(["--timesteps", "128", "--bc-epochs", "1", "--out", str(out), *TINY]) == 0
    assert train_ppo.main(["--timesteps", "192", "--bc-epochs", "1", "--resume", "--out", str(out), *TINY]) == 0
    assert agents.load_policy(out / "final_policy").metadata["num_timesteps"] == 192  # evaluate loads it without pickle
    with pytest.raises(SystemExit):
        train_ppo.main(["--timesteps", "64", "--bc-epochs", "-1", "--out", str(tmp_path / "x"), *TINY])
