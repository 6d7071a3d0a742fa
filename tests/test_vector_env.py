"""`gym.make_vec("CarlaPerception-v0")`: the Gymnasium vector env with batched perception, and `EnvConfig`."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from test_embedded_driving import _facing_building

import carla_gym
from carla_gym.env.config import EnvConfig
from carla_gym.env.vector import CarlaPerceptionVectorEnv
from carla_gym.sim import make_backend
from perception import build_model, save_weights

TINY = dict(camera_size=(32, 64), obs_size=(8, 16), vehicles=2, pedestrians=2)


@pytest.fixture(scope="module")
def lite_weights(tmp_path_factory):
    """An untrained `lite` weights folder: these tests check the plumbing, not the accuracy."""
    torch.manual_seed(0)
    return save_weights(build_model("lite"), tmp_path_factory.mktemp("weights") / "lite")


def assert_close(batched: dict[str, np.ndarray], row: int, single: dict[str, np.ndarray], where: object) -> None:
    for key in single:
        # one batched forward pass vs batch-1 passes: float rounding may move a uint8 level
        tolerance = 2 if key == "semantic" else 1e-3
        assert np.allclose(batched[key][row].astype(float), single[key], atol=tolerance), (where, row, key)


# -- the vector env ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
@pytest.mark.parametrize("perception", ["ground_truth", "model"])
def test_make_vec_agrees_with_single_envs_and_autoresets_in_the_same_step(perception, lite_weights):
    options = dict(perception=perception, weights=lite_weights, **TINY)
    envs = gym.make_vec("CarlaPerception-v0", num_envs=2, max_episode_steps=4, render_mode="rgb_array", **options)
    singles = [gym.make("CarlaPerception-v0", max_episode_steps=4, **options) for _ in range(2)]
    try:
        assert isinstance(envs, CarlaPerceptionVectorEnv)  # the registered vector entry point is the default mode
        assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
        assert envs.observation_space == batch_space(singles[0].observation_space, 2)
        assert envs.action_space == batch_space(singles[0].action_space, 2)
        obs, infos = envs.reset(seed=20)
        single_obs = [env.reset(seed=20 + i)[0] for i, env in enumerate(singles)]
        assert infos["_route_completion"].all() and envs.observation_space.contains(obs)
        actions = np.array([[0.0, 0.6], [0.2, 0.4]], dtype=np.float32)
        for t in range(4):
            for i in range(2):
                assert_close(obs, i, single_obs[i], t)
            obs, rewards, terminated, truncated, infos = envs.step(actions)
            steps = [env.step(actions[i]) for i, env in enumerate(singles)]
            single_obs = [s[0] for s in steps]
            assert rewards.shape == (2,) and np.allclose(rewards, [s[1] for s in steps], atol=1e-5)
        # the 4th step hit the time limit: the last observation and info are kept, the next episode has begun
        assert truncated.all() and not terminated.any()
        assert infos["_final_obs"].all() and list(infos["final_info"]["truncation"]) == ["time_limit"] * 2
        for i in range(2):
            assert_close(
                {k: np.stack([o[k] for o in infos["final_obs"]]) for k in single_obs[i]}, i, single_obs[i], "final"
            )
            assert_close(obs, i, singles[i].reset()[0], "next episode")  # each world goes on with its own generator
        assert not obs["ego_motion"].any() and "truncation" not in infos  # the top-level info is the reset's

        frames = envs.render()
        assert len(frames) == 2 and all(f.shape == (64, 192, 3) and f.dtype == np.uint8 for f in frames)
        with pytest.raises(ValueError, match="expected 2 actions, got 1 actions"):
            envs.step(actions[:1])
        with pytest.raises(ValueError, match="one seed per world"):
            envs.reset(seed=[1, 2, 3])
    finally:
        envs.close()
        for env in singles:
            env.close()
    assert not any(p.is_alive() for p in envs._procs)
    with pytest.raises(RuntimeError, match="closed"):
        envs.reset(seed=0)


@pytest.mark.timeout(300)
def test_forced_collision_ends_one_world_and_starts_its_next_episode():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        b.reset(seed=2)
        pose = _facing_building(b)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(
        gym.make_vec(
            "CarlaPerception-v0",
            num_envs=2,
            perception="ground_truth",
            camera_size=(32, 64),
            obs_size=(8, 16),
            town="grid_suburb",
            vehicles=0,
            pedestrians=0,
            max_route_offset=1e9,
            terminate_off_road=False,
        )
    )
    try:
        envs.reset(seed=2)
        _, infos = envs.reset(options={"reset_mask": np.array([True, False]), "ego_pose": pose})
        assert list(infos["_route_completion"]) == [True, False]  # only world 0 started over
        for step in range(1, 81):  # noqa: B007 - the step count is read after the loop
            obs, reward, terminated, truncated, infos = envs.step(np.tile([0.0, 0.7], (2, 1)).astype(np.float32))
            if terminated[0]:
                break
        assert terminated.tolist() == [True, False] and not truncated.any()
        assert list(infos["_final_obs"]) == [True, False] and infos["final_obs"][1] is None
        assert infos["final_info"]["termination"][0] == "collision" and reward[0] < -9.0
        assert not obs["ego_motion"][0].any() and obs["ego_motion"][1].any()  # world 0 is in a fresh episode
        assert list(infos["_episode"]) == [True, False] and infos["episode"]["l"][0] == step  # SAME_STEP statistics
        assert envs.unwrapped.get_attr("steps") == (0, step)
    finally:
        envs.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_envs=0), "num_envs must be an integer >= 1, got 0"),
        (dict(max_episode_steps=0), "max_episode_steps must be None or an integer >= 1, got 0"),
        (dict(render_mode="human"), "render_mode must be None or 'rgb_array'"),
        (dict(timeout=-1), "timeout must be a positive number"),
        (dict(obs_size=(64, 16)), "must not exceed camera_size"),
        (dict(perception="lidar"), "EnvConfig.perception must be 'model' or 'ground_truth', got 'lidar'"),
    ],
)
def test_bad_vector_env_options_fail_before_any_world_starts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make_vec("CarlaPerception-v0", **{"num_envs": 2, "perception": "ground_truth", **TINY, **kwargs})


def test_sb3_adapter_is_over_the_gymnasium_vector_env():
    assert issubclass(carla_gym.env.BatchedPerceptionVecEnv, carla_gym.env.vector.VecEnv)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        carla_gym.make_vec(1, EnvConfig(perception="ground_truth"), timeout=0)


# -- EnvConfig -----------------------------------------------------------------------------------
def test_config_from_keywords_routes_backend_options_and_overrides_a_config():
    config = EnvConfig.from_kwargs(perception="ground_truth", camera_size=[64, 128], obs_size=(16, 32), vehicles=3)
    assert config.camera_size == (64, 128) and config.backend_options == {"vehicles": 3}
    again = EnvConfig.from_kwargs(config, discrete=True, pedestrians=0)
    assert again.discrete and not config.discrete
    assert again.backend_options == {"vehicles": 3, "pedestrians": 0} and again.obs_size == (16, 32)
    assert pickle.loads(pickle.dumps(again)) == again  # the worker processes get it pickled
    assert EnvConfig(reward={"collision": 3.0}).reward.collision == 3.0


def test_config_gives_each_world_its_town_and_carla_port():
    config = EnvConfig(split="train", town_index=1, camera_size=(32, 64), obs_size=(8, 16))
    towns = carla_gym.sim.backend_class("embedded").towns("train")
    assert [config.world_options(i)["town"] for i in range(3)] == [towns[(1 + i) % len(towns)] for i in range(3)]
    assert config.world_options(0)["size"] == (32, 64) and config.world_options(0)["route_length"] == 200.0
    carla = EnvConfig(backend="carla", perception="ground_truth", backend_options={"port": 3000})
    assert [carla.world_options(i)["port"] for i in range(3)] == [3000, 3004, 3008]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(engine="tensorrt"), "EnvConfig.engine must be one of 'auto', 'torch', 'onnxruntime', got 'tensorrt'"),
        (dict(blocked_seconds=0), "EnvConfig.blocked_seconds must be a positive finite number, got 0"),
        (dict(max_route_offset="far"), "EnvConfig.max_route_offset must be a positive number, got 'far'"),
        (dict(town_index=-1), "EnvConfig.town_index must be a non-negative integer, got -1"),
        (dict(reward={"colision": 1.0}), "EnvConfig.reward: .*colision"),
        (dict(route_length=float("inf")), "route_length"),
        (dict(backend="unreal"), "unknown simulator backend 'unreal'"),
        (dict(split="holdout"), "unknown split 'holdout'"),
        (dict(backend_options={"size": (32, 64)}), "backend option 'size' is set by EnvConfig.camera_size"),
    ],
)
def test_config_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(**kwargs)


def test_env_takes_a_config_and_keywords_override_it():
    config = EnvConfig(
        perception="ground_truth",
        camera_size=(32, 64),
        obs_size=(8, 16),
        backend_options={"vehicles": 0, "pedestrians": 0},
    )
    env = gym.make("CarlaPerceptionDiscrete-v0", config=config, obs_size=(4, 8))
    try:
        assert env.unwrapped.config == EnvConfig.from_kwargs(config, discrete=True, obs_size=(4, 8))
        assert env.action_space == gym.spaces.Discrete(15) and env.observation_space["depth"].shape == (1, 4, 8)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
    finally:
        env.close()


# -- the agent command lines build their worlds from EnvConfig ------------------------------------
@pytest.mark.parametrize("module", ["train_ppo", "imitation", "evaluate"])
def test_agent_clis_reject_a_bad_camera_size_before_any_world_starts(module, tmp_path, capsys):
    import importlib

    cli = importlib.import_module(f"agents.{module}")
    args = ["autopilot"] if module == "evaluate" else ["--out", str(tmp_path / "run"), "--n-envs", "2"]
    with pytest.raises(SystemExit) as err:
        cli.main([*args, "--perception", "ground_truth", "--camera-size", "0", "64"])
    assert err.value.code == 2
    assert "camera_size" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
