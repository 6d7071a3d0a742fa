"""`CarlaPerception-v0` and `make_vec` on the embedded world, in both perception modes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from test_embedded_driving import _facing_building

import carla_gym
from carla_gym.env import EnvConfig
from carla_gym.env.contracts import control_to_action
from perception import build_model, save_weights

SMALL = dict(camera_size=(64, 128), obs_size=(16, 32), vehicles=3, pedestrians=3)


@pytest.fixture(scope="module")
def lite_weights(tmp_path_factory):
    """An untrained `lite` weights folder: these tests check the plumbing, not the accuracy."""
    torch.manual_seed(0)
    return save_weights(build_model("lite"), tmp_path_factory.mktemp("weights") / "lite")


def make(perception: str, weights=None, **kwargs) -> gym.Env:
    extra = {"weights": weights} if perception == "model" else {}
    return gym.make("CarlaPerception-v0", perception=perception, **extra, **{**SMALL, **kwargs})


@pytest.mark.parametrize("perception", ["ground_truth", "model"])
def test_gymnasium_and_sb3_checkers_pass(perception, lite_weights):
    env = make(perception, lite_weights)
    try:
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=False)
    finally:
        env.close()


def test_make_without_import_and_discrete_variant():
    env = gym.make("carla_gym:CarlaPerceptionDiscrete-v0", perception="ground_truth", **SMALL)
    try:
        assert env.action_space == gym.spaces.Discrete(15)
        env.reset(seed=0)
        env.step(3)
        with pytest.raises(ValueError, match="integer in"):
            env.step(15)
    finally:
        env.close()


def test_same_seed_same_observations(lite_weights):
    runs = []
    for _ in range(2):
        env = make("model", lite_weights)
        obs, _ = env.reset(seed=11)
        seq = [obs]
        for _ in range(3):
            seq.append(env.step(np.array([0.05, 0.5]))[0])
        env.close()
        runs.append(seq)
    for a, b in zip(*runs, strict=False):
        for key in a:
            assert np.array_equal(a[key], b[key]), key


def test_bad_actions():
    env = make("ground_truth")
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="finite"):
            env.step(np.array([np.nan, 0.0]))
        with pytest.raises(ValueError, match="shape"):
            env.step(np.array([0.0, 0.0, 0.0]))
        env.step(np.array([5.0, -7.0]))  # outside the box: clipped, not an error
        assert env.unwrapped.task.last_action.tolist() == [1.0, -1.0]
    finally:
        env.close()


def test_forced_collision_terminates_and_time_limit_truncates():
    env = make(
        "ground_truth", vehicles=0, pedestrians=0, town="grid_suburb", max_route_offset=1e9, terminate_off_road=False
    )
    try:
        env.reset(seed=2)
        pose = _facing_building(env.unwrapped.sim)
        env.reset(seed=2, options={"ego_pose": pose})
        for _ in range(80):
            _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.7]))
            if terminated or truncated:
                break
        assert terminated and not truncated
        assert info["termination"] == "collision" and info["infractions"]["collision_static"] == 1
        assert info["reward_terms"]["collision"] == -10.0 and reward < -9.0
    finally:
        env.close()
    env = make("ground_truth", max_episode_steps=3)
    try:
        env.reset(seed=0)
        flags = [env.step(np.array([0.0, 0.3]))[2:4] for _ in range(3)]
        assert flags == [(False, False), (False, False), (False, True)]
    finally:
        env.close()


def test_render_dashboard():
    env = make("ground_truth", render_mode="rgb_array")
    try:
        env.reset(seed=0)
        env.step(np.array([0.0, 0.5]))
        picture = env.render()
        assert picture.shape == (128, 384, 3) and picture.dtype == np.uint8
        assert picture[:64, :128].tolist() == env.unwrapped.task.frame.rgb.tolist()  # camera panel
    finally:
        env.close()


@pytest.mark.parametrize("perception", ["ground_truth", "model"])
def test_make_vec_agrees_with_single_envs(perception, lite_weights):
    extra = {"weights": lite_weights} if perception == "model" else {}
    vec = carla_gym.make_vec(2, perception=perception, max_episode_steps=6, **extra, **SMALL)
    singles = [make(perception, lite_weights) for _ in range(2)]
    try:
        vec.seed(20)
        obs = vec.reset()
        single_obs = [env.reset(seed=20 + i)[0] for i, env in enumerate(singles)]
        actions = np.array([[0.0, 0.6], [0.2, 0.4]], dtype=np.float32)
        for t in range(6):
            for i in range(2):
                for key in single_obs[i]:
                    # one batched forward pass vs batch-1 passes: float rounding may move a uint8 level
                    tolerance = 2 if key == "semantic" else 1e-3
                    assert np.allclose(obs[key][i].astype(float), single_obs[i][key], atol=tolerance), (t, i, key)
            obs, rewards, dones, infos = vec.step(actions)
            steps = [env.step(actions[i]) for i, env in enumerate(singles)]
            single_obs = [s[0] for s in steps]
            assert np.allclose(rewards, [s[1] for s in steps], atol=1e-5)
        # the 6th step hit the time limit: SB3 auto-reset with the final observation kept in info
        assert dones.all() and all(info["TimeLimit.truncated"] for info in infos)
        for i in range(2):
            assert np.allclose(infos[i]["terminal_observation"]["state"], single_obs[i]["state"], atol=1e-5)
        assert not obs["ego_motion"].any()  # fresh episodes: no motion yet
        with pytest.raises(ValueError, match="finite"):
            vec.step(np.array([[np.inf, 0.0], [0.0, 0.0]]))
    finally:
        vec.close()
        for env in singles:
            env.close()


def test_record_video_wrapper_writes_the_dashboard(tmp_path):
    pytest.importorskip("moviepy")
    env = gym.wrappers.RecordVideo(
        make("ground_truth", render_mode="rgb_array"), str(tmp_path / "videos"), disable_logger=True
    )
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.array([0.0, 0.5]))
    finally:
        env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_default_env_uses_the_bundled_weights():
    env = gym.make("CarlaPerception-v0", **SMALL)
    try:
        model = env.unwrapped.perception.model
        assert model.model.weights_config["preset"] == "lite"
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(np.array([0.0, 0.5]))
        assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_expert_action_in_info_is_the_autopilots_action_in_the_returned_state():
    env = gym.make("CarlaPerception-v0", perception="ground_truth", expert_action=True, max_episode_steps=5, **SMALL)
    try:
        _, info = env.reset(seed=3)
        for _ in range(3):
            expected = control_to_action(env.unwrapped.autopilot_control())
            assert info["expert_action"].dtype == np.float32 and np.array_equal(info["expert_action"], expected)
            _, _, _, _, info = env.step(expected)
    finally:
        env.close()
    plain = make("ground_truth")
    try:
        assert "expert_action" not in plain.reset(seed=3)[1]  # off by default
    finally:
        plain.close()


def test_expert_action_needs_a_backend_with_an_autopilot():
    with pytest.raises(ValueError, match="expert_action.*'carla'"):
        EnvConfig(backend="carla", expert_action=True)


def test_pedestrian_crossings_send_a_pedestrian_across_in_a_share_of_episodes_drawn_from_the_seed():
    from carla_gym.env.task import DrivingTask
    from carla_gym.sim.contract import CROSSING_M

    def crossings(share: float) -> dict[int, float]:
        task = DrivingTask(None, EnvConfig().reward, pedestrian_crossings=share)  # type: ignore[arg-type]
        return {s: o["crossing_m"] for s in range(200) if (o := task.scenario(s, None))}

    few, many, every = crossings(0.25), crossings(0.75), crossings(1.0)
    assert 30 < len(few) < 70 and 120 < len(many) < 180 and len(every) == 200
    assert few.items() <= many.items() <= every.items()  # a seed's draw does not depend on the share
    assert all(CROSSING_M[0] <= d <= CROSSING_M[1] for d in every.values())
    task = DrivingTask(None, EnvConfig().reward, pedestrian_crossings=1.0)  # type: ignore[arg-type]
    assert task.scenario(0, {"crossing_m": 12.0, "weather": "fog"}) == {"crossing_m": 12.0, "weather": "fog"}
    assert DrivingTask(None, EnvConfig().reward).scenario(0, None) is None  # off by default

    env = make("ground_truth", pedestrian_crossings=1.0)
    try:
        _, info = env.reset(seed=4)
        assert env.unwrapped.task.sim.crowd.on_road_crossing()[0]
        assert CROSSING_M[0] <= info["scenario"]["crossing_m"] <= CROSSING_M[1]  # the reset info says where
        _, info = env.reset(seed=4, options={"weather": "foggy", "crossing_m": 12.0})
        assert info["scenario"] == {"weather": "foggy", "crossing_m": 12.0}
    finally:
        env.close()


@pytest.mark.parametrize("distance_m", [(5.0, 15.0), (12.0, 12.0), (30.0, 150.0)])
def test_crossing_distance_scales_each_seeds_draw_into_the_range(distance_m):
    from carla_gym.env.task import DrivingTask
    from carla_gym.sim.contract import CROSSING_M

    reward = EnvConfig().reward
    default = DrivingTask(None, reward, pedestrian_crossings=0.5)  # type: ignore[arg-type]
    ranged = DrivingTask(None, reward, pedestrian_crossings=0.5, crossing_distance_m=distance_m)  # type: ignore[arg-type]
    low, high = distance_m
    for seed in range(50):
        a, b = default.scenario(seed, None), ranged.scenario(seed, None)
        assert (a is None) == (b is None)  # the same episodes have a crossing
        if a is not None and b is not None:
            share = (a["crossing_m"] - CROSSING_M[0]) / (CROSSING_M[1] - CROSSING_M[0])
            assert b["crossing_m"] == pytest.approx(low + share * (high - low))


def test_crossing_distance_reaches_the_task():
    config = EnvConfig(perception="ground_truth", pedestrian_crossings=1.0, crossing_distance_m=[6, 9])
    assert config.crossing_distance_m == (6.0, 9.0)
    assert config.task_kwargs()["crossing_distance_m"] == (6.0, 9.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"crossing_distance_m": (15.0, 5.0)}, "crossing_distance_m must be .* 0 < low <= high"),
        ({"crossing_distance_m": (0.0, 5.0)}, "crossing_distance_m must be .* 0 < low <= high"),
        ({"crossing_distance_m": (5.0, float("nan"))}, "crossing_distance_m must be .* 0 < low <= high"),
        ({"crossing_distance_m": (5.0,)}, "crossing_distance_m must be two numbers"),
        ({"crossing_distance_m": "5 15"}, "crossing_distance_m must be two numbers"),
        ({"pedestrian_crossings": 0.5, "crossing_distance_m": (10.0, 250.0)}, "longer than 250 m"),
        ({"pedestrian_crossings": 1.5}, "pedestrian_crossings must be from 0 to 1"),
        ({"pedestrian_crossings": "often"}, "pedestrian_crossings must be a number"),
        ({"pedestrian_crossings": 0.5, "route_length": 30.0}, "routes longer than 40 m"),
        ({"pedestrian_crossings": 0.5, "backend": "carla"}, "needs the embedded backend"),
    ],
)
def test_bad_pedestrian_crossings_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(**options)
