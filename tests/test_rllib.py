"""Ray RLlib: each world's town and CARLA port from its runner and slot, the RLModule, and a tiny PPO run on local Ray."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from ray.rllib.core.columns import Columns
from ray.rllib.env.env_context import EnvContext

from agents.rllib import (
    PerceptionRLModule,
    make_env,
    ppo_config,
    world_index,
    world_kwargs,
)
from carla_gym.env.observation import observation_space

TRAIN = ("grid_suburb", "ring_boulevard", "offset_downtown", "winding_hills", "industrial_park", "lakeside_village")
CARLA_TRAIN = ("Town01", "Town03", "Town04", "Town05", "Town06", "Town07")
TINY_WORLD = {
    "perception": "ground_truth",
    "camera_size": (32, 64),
    "obs_size": (16, 32),
    "route_length": 30.0,
    "vehicles": 1,
    "pedestrians": 1,
}


@pytest.mark.parametrize(
    "worker_index, vector_index, num_envs, expected",
    [
        (0, 0, 1, 0),  # the local runner, sampling alone
        (1, 0, 1, 0),  # remote runners count from 1
        (1, 1, 2, 1),
        (2, 0, 2, 2),
        (3, 1, 4, 9),
    ],
)
def test_world_index(worker_index, vector_index, num_envs, expected):
    assert world_index(worker_index, vector_index, num_envs) == expected


@pytest.mark.parametrize("slot", [(1, 2, 2), (1, -1, 2), (-1, 0, 1), (1, 0, 0)])
def test_world_index_rejects_a_slot_outside_its_runner(slot):
    with pytest.raises(ValueError, match="bad world slot"):
        world_index(*slot)


@pytest.mark.parametrize(
    "config, worker_index, vector_index, num_envs, expected",
    [
        # embedded: the town round-robin over the split by global index; no port
        ({"split": "train"}, 2, 1, 2, {"split": "train", "town": TRAIN[3]}),
        ({"split": "train", "town_index": 5}, 1, 1, 2, {"split": "train", "town": TRAIN[0]}),  # (5 + 1) % 6
        ({"split": "val"}, 4, 0, 1, {"split": "val", "town": "market_crossroads"}),  # a one-town split: all the same
        ({"perception": "model"}, 3, 0, 1, {"perception": "model"}),  # no split: the town is the env's default
        # carla: one server per world, 4 ports apart from the base port (default 2000)
        ({"backend": "carla"}, 1, 0, 1, {"backend": "carla", "port": 2000}),
        ({"backend": "carla", "port": 3000}, 3, 1, 2, {"backend": "carla", "port": 3020}),  # index 5
        (
            {"backend": "carla", "port": 3000, "split": "train"},
            2,
            1,
            3,
            {"backend": "carla", "port": 3016, "split": "train", "town": CARLA_TRAIN[4]},
        ),  # index 4
        (
            {"backend": "carla", "split": "train", "num_envs": 2},
            1,
            1,
            2,
            {"backend": "carla", "port": 2004, "split": "train", "town": CARLA_TRAIN[1]},
        ),  # RLlib's num_envs is dropped
    ],
)
def test_world_kwargs(config, worker_index, vector_index, num_envs, expected):
    assert world_kwargs(config, worker_index, vector_index, num_envs) == expected


def test_world_kwargs_rejects_a_town_outside_the_split():
    with pytest.raises(ValueError, match="not in the 'train' split"):
        world_kwargs({"split": "train", "town": "harbour_district"}, 1, 0, 1)


def test_make_env_reads_rllibs_env_context():
    env = make_env(EnvContext({**TINY_WORLD, "split": "train"}, worker_index=3))
    try:
        assert env.unwrapped.sim.config.town == TRAIN[2]
    finally:
        env.close()
    # vector_entry_point mode: a plain dict with num_envs, the index passed by the env runner
    group = make_env({**TINY_WORLD, "split": "train", "num_envs": 2}, worker_index=2)
    try:
        assert isinstance(group, gym.vector.SyncVectorEnv) and group.num_envs == 2
        assert [e.unwrapped.sim.config.town for e in group.envs] == [TRAIN[2], TRAIN[3]]
        obs, _ = group.reset(seed=0)
        assert obs["semantic"].shape == (2, 6, 16, 32) and obs["semantic"].dtype == np.uint8
    finally:
        group.close()


@pytest.mark.parametrize(
    "action_space, outputs",
    [
        (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), 4),  # mean and log-std per action
        (gym.spaces.Discrete(15), 15),  # logits
    ],
)
def test_rl_module_outputs_and_gradients(action_space, outputs):
    space = observation_space((16, 32))
    module = PerceptionRLModule(
        observation_space=space,
        action_space=action_space,
        model_config={"cnn_channels": 4, "vector_dim": 8, "features_dim": 16},
    )
    obs = {k: torch.as_tensor(np.stack([s.sample() for _ in range(3)])) for k, s in space.spaces.items()}
    out = module.forward_train({Columns.OBS: obs})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (3, outputs)
    values = module.compute_values({Columns.OBS: obs}, out[Columns.EMBEDDINGS])
    assert values.shape == (3,)
    values.sum().backward()
    assert module.encoder.cnn[0].weight.grad.abs().sum() > 0  # the value loss reaches the image CNN


@pytest.fixture
def local_ray():
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False
    )  # a fresh instance, never a running cluster
    yield
    ray.shutdown()


@pytest.mark.timeout(150)
def test_tiny_ppo_on_local_ray(local_ray, tmp_path):
    batch = 64
    config = ppo_config(
        {**TINY_WORLD, "split": "train", "max_episode_steps": 8},
        num_env_runners=2,
        num_envs_per_env_runner=2,
        model_config={"cnn_channels": 4, "vector_dim": 8, "features_dim": 16},
        train_batch_size_per_learner=batch,
        minibatch_size=32,
        num_epochs=1,
    ).env_runners(rollout_fragment_length=batch // 4)
    algo = config.build_algo()
    try:
        towns = algo.env_runner_group.foreach_env_runner(
            lambda r: (r.worker_index, [e.unwrapped.sim.config.town for e in r.env.unwrapped.envs]),
            local_env_runner=False,
        )
        assert sorted(towns) == [(1, list(TRAIN[0:2])), (2, list(TRAIN[2:4]))]  # 4 worlds, 4 towns
        for _ in range(2):
            result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 2 * batch
        runners = result["env_runners"]
        assert runners["num_episodes_lifetime"] > 0  # 8-step episodes ended and were scored
        assert np.isfinite(runners["episode_return_mean"])
        assert 0.0 <= runners["route_completion"] <= 1.0
        assert runners["distance"] >= 0.0
        assert np.isfinite(result["learners"]["default_policy"]["total_loss"])
        algo.save_to_path(str(tmp_path / "checkpoint"))
        assert (tmp_path / "checkpoint" / "learner_group").is_dir()
    finally:
        algo.stop()
