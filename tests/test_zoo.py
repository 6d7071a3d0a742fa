"""RL Baselines3 Zoo trains and replays `CarlaPerception-v0` from the shipped hyperparameter modules."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("rl_zoo3", reason="RL Baselines3 Zoo is not installed (pip install rl_zoo3)")

from stable_baselines3.common.buffers import DictReplayBuffer

from agents.features import PerceptionExtractor
from agents.hyperparams import ppo, sac
from carla_gym.env import observation_space

TINY_ENV = ["--env-kwargs", "perception:'ground_truth'", "camera_size:(32,64)", "obs_size:(16,32)"]
TINY = {
    "ppo": ["n_envs:1", "n_steps:32", "batch_size:32", "n_epochs:1"],
    "sac": ["buffer_size:200", "learning_starts:16", "batch_size:16", "gradient_steps:1"],
}


def _zoo(module, argv: list[str], monkeypatch) -> None:
    """Run a Zoo command line (`python -m rl_zoo3.<module> ARGV`) in this process."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    getattr(module, module.__name__.rsplit(".", 1)[1])()


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_zoo_trains_and_enjoys_with_the_perception_extractor(algo, tmp_path, monkeypatch, capsys):
    from rl_zoo3 import enjoy, train

    monkeypatch.chdir(tmp_path)
    common = ["--algo", algo, "--env", "CarlaPerception-v0", "--gym-packages", "carla_gym", "--seed", "0"]
    _zoo(
        train,
        [
            *common,
            "--conf-file",
            f"agents.hyperparams.{algo}",
            "-n",
            "64",
            "-f",
            "logs",
            "--eval-freq",
            "-1",
            "--hyperparams",
            *TINY[algo],
            *TINY_ENV,
        ],
        monkeypatch,
    )
    run = tmp_path / "logs" / algo / "CarlaPerception-v0_1"
    assert (run / "CarlaPerception-v0.zip").is_file()
    config = (run / "CarlaPerception-v0" / "config.yml").read_text()
    assert "features_extractor_class: !!python/name:agents.features.PerceptionExtractor" in config
    _zoo(enjoy, [*common, "-f", "logs", "--no-render", "-n", "40", "--deterministic"], monkeypatch)
    assert f"Loading {run.relative_to(tmp_path) / 'CarlaPerception-v0.zip'}" in capsys.readouterr().out

    from rl_zoo3 import ALGOS

    model = ALGOS[algo].load(run / "CarlaPerception-v0.zip", device="cpu", buffer_size=1)
    assert isinstance(
        model.actor.features_extractor if algo == "sac" else model.policy.features_extractor, PerceptionExtractor
    )
    assert model.observation_space["semantic"].shape[-2:] == (16, 32)  # the env kwargs reached the env


@pytest.mark.parametrize("module", [ppo, sac])
def test_each_read_of_the_zoo_settings_is_a_fresh_dict(module):
    first = module.hyperparams["CarlaPerception-v0"]
    first.pop("n_timesteps")  # what the Zoo does to the dict it reads
    first["policy_kwargs"]["use_sde"] = True  # what SAC does to its policy_kwargs
    again = module.hyperparams["CarlaPerception-v0"]
    assert "n_timesteps" in again and "use_sde" not in again["policy_kwargs"]
    assert again["policy_kwargs"]["features_extractor_class"] is PerceptionExtractor


def test_ppo_settings_are_the_ones_train_ppo_uses():
    from agents import train_ppo

    zoo = ppo.hyperparams["CarlaPerception-v0"]
    assert {k: zoo[k] for k in train_ppo.PPO_DEFAULTS} == train_ppo.PPO_DEFAULTS
    assert "use_sde" not in ppo.hyperparams["CarlaPerceptionDiscrete-v0"]  # gSDE needs continuous actions


def test_sac_buffer_size_matches_what_sb3_allocates():
    space = observation_space((16, 32))
    buffer = DictReplayBuffer(10, space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), device="cpu")
    stored = sum(a.nbytes for a in (*buffer.observations.values(), *buffer.next_observations.values()))
    assert sac.buffer_bytes((16, 32), 10) == stored
    assert 1e9 < sac.buffer_bytes() < 3e9  # the default buffer fits in a few GB


def test_agents_evaluate_scores_a_zoo_run_with_its_normalisation_and_frame_stack(tmp_path, monkeypatch):
    from rl_zoo3 import train

    from agents import evaluate
    from agents.policies import PickleRefusedError, load_policy

    monkeypatch.chdir(tmp_path)
    _zoo(
        train,
        [
            "--algo",
            "ppo",
            "--env",
            "CarlaPerception-v0",
            "--gym-packages",
            "carla_gym",
            "--conf-file",
            "agents.hyperparams.ppo",
            "-n",
            "32",
            "-f",
            "logs",
            "--eval-freq",
            "-1",
            "--hyperparams",
            *TINY["ppo"],
            "frame_stack:2",
            "normalize:True",
            "--env-kwargs",
            "perception:'ground_truth'",
            "camera_size:(40,80)",
        ],
        monkeypatch,
    )
    run = tmp_path / "logs" / "ppo" / "CarlaPerception-v0_1"
    with pytest.raises(PickleRefusedError):
        load_policy(str(run / "CarlaPerception-v0.zip"))
    driver = load_policy(str(run / "CarlaPerception-v0.zip"), trust_pickle=True)
    assert driver.frame_stack == 2 and driver.normalization is not None  # found in the run's CarlaPerception-v0/
    options = ["--perception", "ground_truth", "--camera-size", "40", "80", "--max-steps", "3", "--episodes", "1"]
    assert evaluate.main([str(run / "CarlaPerception-v0.zip"), "--trust-pickle", *options]) == 0

    from agents import convert_policy

    assert (
        convert_policy.main(
            [
                str(run / "CarlaPerception-v0.zip"),
                str(tmp_path / "converted"),
                "--trust-pickle",
                "--perception",
                "ground_truth",
            ]
        )
        == 0
    )
    converted = load_policy(str(tmp_path / "converted"))  # no pickle from here on
    assert converted.frame_stack == 2
    np.testing.assert_array_equal(converted.normalization.mean["depth"], driver.normalization.mean["depth"])
    assert evaluate.main([str(tmp_path / "converted"), *options]) == 0
