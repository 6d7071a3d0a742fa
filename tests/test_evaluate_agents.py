"""agents.evaluate feeds a policy what it trained on: recurrent state, VecNormalize statistics, stacked frames, matching conditions."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

import agents
from agents import evaluate
from agents.features import PerceptionExtractor
from agents.policies import ModelDriver, PickleRefusedError, load_policy
from agents.policy_files import (
    CONFIG_FILE,
    NORMALIZATION_FILE,
    ObsNormalization,
    PolicyFileError,
    save_policy,
)
from carla_gym.env import observation_space

TINY_EXTRACTOR = dict(
    features_extractor_class=PerceptionExtractor,
    features_extractor_kwargs=dict(cnn_channels=2, vector_dim=4, features_dim=8),
)
GT = ["--perception", "ground_truth", "--camera-size", "40", "80", "--max-steps", "3", "--episodes", "1"]


class _SpacesEnv(gym.Env):
    """Just the spaces, for an algorithm's constructor."""

    def __init__(self, space: gym.Space) -> None:
        self.observation_space, self.action_space = space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


class _Counting(gym.Env):
    """Observation t of an episode is built from t + 10 x resets: a sequence that wrappers visibly transform."""

    observation_space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 100, (1, 2, 2), np.uint8), "vec": gym.spaces.Box(-100.0, 100.0, (3,), np.float32)}
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self) -> None:
        self.t, self.resets = 0, 0

    def obs(self) -> dict[str, np.ndarray]:
        value = self.t + 10 * self.resets
        return {
            "image": np.full((1, 2, 2), value, np.uint8),
            "vec": np.array([0.1 * value, -0.1 * value, 0.5], np.float32),
        }

    def reset(self, seed=None, options=None):
        self.t, self.resets = 0, self.resets + 1
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        return self.obs(), 0.0, False, self.t >= 3, {}


class _Recorder:
    """A predict() model that records what it is given and returns a step counter as its recurrent state."""

    def __init__(self, space: gym.Space) -> None:
        self.observation_space, self.calls = space, []

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        self.calls.append((obs, state, episode_start.tolist()))
        return np.zeros((1, 2), np.float32), (0 if state is None else state) + 1


def _normalized_stacked_env(n_stack: int) -> tuple[VecFrameStack, VecNormalize]:
    norm = VecNormalize(
        DummyVecEnv([_Counting]), norm_obs_keys=["vec"], norm_reward=False, clip_obs=1.5, training=False
    )
    norm.obs_rms["vec"].mean[:] = [0.0, 1.0, 2.0]
    norm.obs_rms["vec"].var[:] = [1.0, 4.0, 9.0]
    return VecFrameStack(norm, n_stack), norm


def test_driver_normalises_and_stacks_like_sb3_wrappers_across_episodes():
    wrapped, norm = _normalized_stacked_env(3)
    expected = [wrapped.reset()]
    for _ in range(5):  # the time limit at step 3 starts a second episode
        expected.append(wrapped.step(np.zeros((1, 2), np.float32))[0])
    raw_env = _Counting()
    model = _Recorder(wrapped.observation_space)
    driver = ModelDriver(model, frame_stack=3, normalization=ObsNormalization.from_vecnormalize(norm))
    driver.check_space(raw_env.observation_space)
    for _ in range(2):
        obs, _ = raw_env.reset()
        driver.reset()
        driver(obs, raw_env)
        for _ in range(2):
            driver(raw_env.step(None)[0], raw_env)
    assert len(model.calls) == 6  # the vector env auto-resets after step 3: its 4th observation starts episode 2
    for (got, _, _), want in zip(model.calls, expected, strict=False):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    # Episode 1, t=2 (value 12): vec (1.2, -1.2, 0.5) -> ((1.2-0)/1, (-1.2-1)/2, (0.5-2)/3).
    assert model.calls[2][0]["vec"][0, -3:] == pytest.approx([1.2, -1.1, -0.5], abs=1e-6)
    # Episode 2 starts a fresh stack: zeros, then (2.0, -2.0, 0.5) normalised and clipped to 1.5.
    assert model.calls[3][0]["vec"][0].tolist() == pytest.approx([0.0] * 6 + [1.5, -1.5, -0.5], abs=1e-6)


def test_driver_carries_recurrent_state_and_resets_it_per_episode():
    env = gym.make("CarlaPerception-v0", perception="ground_truth", camera_size=(40, 80), max_episode_steps=3)
    model = _Recorder(env.observation_space)
    driver = ModelDriver(model)
    try:
        for seed in (0, 1):
            evaluate.run_episode(env, driver, seed)
    finally:
        env.close()
    assert [c[2] for c in model.calls] == [[True], [False], [False], [True], [False], [False]]
    assert [c[1] for c in model.calls] == [None, 1, 2, None, 1, 2]


def test_recurrent_ppo_zip_is_scored_with_its_lstm_state(tmp_path):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    space = observation_space((40, 80))
    model = sb3_contrib.RecurrentPPO(
        "MultiInputLstmPolicy",
        DummyVecEnv([lambda: _SpacesEnv(space)]),
        n_steps=8,
        batch_size=8,
        seed=0,
        policy_kwargs=dict(lstm_hidden_size=4, net_arch=[4], **TINY_EXTRACTOR),
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    model.save(tmp_path / "lstm.zip")
    with pytest.raises(PickleRefusedError):
        load_policy(str(tmp_path / "lstm.zip"))
    driver = load_policy(str(tmp_path / "lstm.zip"), device="cpu", trust_pickle=True)
    assert isinstance(driver.model, sb3_contrib.RecurrentPPO)
    space.seed(0)
    observations = [space.sample() for _ in range(4)]
    state, carried, fresh = None, [], []
    for i, obs in enumerate(observations):
        batch = {k: v[None] for k, v in obs.items()}
        action, state = model.predict(batch, state=state, episode_start=np.array([i == 0]), deterministic=True)
        carried.append(action[0])
        fresh.append(model.predict(batch, episode_start=np.array([True]), deterministic=True)[0][0])
    driver.reset()
    got = [driver(obs, None) for obs in observations]
    np.testing.assert_allclose(got, carried, rtol=1e-5)
    assert not np.allclose(got[1:], fresh[1:])  # a state reset every step would have given these
    summary = evaluate.evaluate(
        str(tmp_path / "lstm.zip"),
        episodes=1,
        perception="ground_truth",
        max_steps=3,
        trust_pickle=True,
        camera_size=(40, 80),
    )
    assert summary["episodes"] == 1


@pytest.fixture
def gt_policy(tmp_path):
    model = PPO(
        "MultiInputPolicy",
        DummyVecEnv([lambda: _SpacesEnv(observation_space((40, 80)))]),
        n_steps=8,
        batch_size=8,
        seed=0,
        policy_kwargs=dict(net_arch=[4], **TINY_EXTRACTOR),
    )
    metadata = {
        "perception": "ground_truth",
        "perception_weights_sha256": None,
        "camera_size": [40, 80],
        "obs_size": [40, 80],
    }
    return save_policy(model, tmp_path / "policy", metadata)


def test_a_policy_that_reads_the_road_user_gaps_gets_them(tmp_path):
    import json

    model = PPO(
        "MultiInputPolicy",
        DummyVecEnv([lambda: _SpacesEnv(observation_space((40, 80), road_user_gaps=True))]),
        n_steps=8,
        batch_size=8,
        seed=0,
        policy_kwargs=dict(net_arch=[4], **TINY_EXTRACTOR),
    )
    folder = save_policy(model, tmp_path / "policy", {"perception": "ground_truth", "road_user_gaps": True})
    out = tmp_path / "eval.json"
    assert evaluate.main([str(folder), *GT, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["policy_metadata"]["road_user_gaps"] is True


@pytest.mark.parametrize(
    "options, differences",
    [
        (["--camera-size", "64", "128"], ["camera_size: trained with [40, 80], evaluating with [64, 128]"]),
        (["--perception", "model"], ['perception: trained with "ground_truth", evaluating with "model"']),
    ],
)
def test_evaluation_under_other_training_conditions_is_refused(gt_policy, tmp_path, capsys, options, differences):
    out = tmp_path / "eval.json"
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(gt_policy), *GT, *options, "--out", str(out)])
    message = capsys.readouterr().err
    assert err.value.code == 2 and "--allow-mismatch" in message and not out.exists()
    assert all(line in message for line in differences)
    assert evaluate.main([str(gt_policy), *GT, *options, "--allow-mismatch", "--out", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize(
    "metadata, evaluation, expected",
    [
        (
            {"perception": "model", "perception_weights_sha256": "aa", "obs_size": [40, 80]},
            {"perception": "model", "perception_weights_sha256": "bb", "obs_size": (40, 80)},
            ['perception_weights_sha256: trained with "aa", evaluating with "bb"'],
        ),
        (
            {"perception": "ground_truth", "perception_weights_sha256": None},  # no weights: nothing to compare
            {"perception": "ground_truth", "perception_weights_sha256": None},
            [],
        ),
        ({}, {"perception": "model", "camera_size": (128, 256)}, []),  # nothing recorded (a plain SB3 .zip)
        (
            {"camera_size": [128, 256], "obs_size": [40, 80]},
            {"camera_size": (128, 256), "obs_size": (20, 40)},
            ["obs_size: trained with [40, 80], evaluating with [20, 40]"],
        ),
    ],
)
def test_training_mismatches_lists_each_difference(metadata, evaluation, expected):
    assert evaluate.training_mismatches(metadata, evaluation) == expected


def test_policy_folder_records_normalisation_and_frame_stack(tmp_path):
    wrapped, norm = _normalized_stacked_env(2)
    model = PPO("MultiInputPolicy", wrapped, n_steps=8, batch_size=8, seed=0, policy_kwargs=dict(net_arch=[4]))
    normalization = ObsNormalization.from_vecnormalize(norm)
    folder = save_policy(model, tmp_path / "p", {}, normalization, frame_stack=2)
    loaded = agents.load_policy(folder)
    assert loaded.frame_stack == 2
    np.testing.assert_array_equal(loaded.normalization.var["vec"], [1.0, 4.0, 9.0])
    assert loaded.normalization.clip_obs == 1.5 and set(loaded.normalization.mean) == {"vec"}
    driver = load_policy(str(folder))
    assert driver.frame_stack == 2 and driver.normalization is not None
    driver.check_space(_Counting.observation_space)
    with pytest.raises(ValueError, match="frame_stack 1"):  # told to stack fewer frames than the policy takes
        load_policy(str(folder), frame_stack=1).check_space(_Counting.observation_space)
    (folder / NORMALIZATION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="normalises its observations"):
        agents.load_policy(folder)
    config = (folder / CONFIG_FILE).read_text().replace('"frame_stack": 2', '"frame_stack": 0')
    (folder / CONFIG_FILE).write_text(config)
    with pytest.raises(PolicyFileError, match="'frame_stack' must be >= 1"):
        agents.load_policy(folder)


def test_vecnormalize_pickle_needs_trust(tmp_path):
    _, norm = _normalized_stacked_env(1)
    norm.save(str(tmp_path / "vecnormalize.pkl"))
    from agents.policies import load_vecnormalize

    with pytest.raises(PickleRefusedError, match="--trust-pickle"):
        load_vecnormalize(tmp_path / "vecnormalize.pkl", trust_pickle=False)
    stats = load_vecnormalize(tmp_path / "vecnormalize.pkl", trust_pickle=True)
    obs = _Counting().reset()[0]
    np.testing.assert_allclose(stats(obs)["vec"], norm.normalize_obs({k: v[None] for k, v in obs.items()})["vec"][0])
    assert pickle.loads(pickle.dumps(stats)).clip_obs == 1.5


def test_normalised_image_keys_change_the_space_as_vecnormalize_declares():
    norm = VecNormalize(
        DummyVecEnv([lambda: _SpacesEnv(observation_space((40, 80)))]),
        norm_obs_keys=["semantic", "state"],
        clip_obs=5.0,
    )
    ours = ObsNormalization.from_vecnormalize(norm).space(observation_space((40, 80)))
    assert ours == norm.observation_space
    assert ours["semantic"] == gym.spaces.Box(
        -5.0, 5.0, (6, 40, 80), np.float32
    )  # stacked like any box, on its last axis
    assert ours["depth"] == observation_space((40, 80))["depth"]


def test_named_route_sets_are_the_published_test_town_routes():
    from agents.scoring import ROUTE_SETS

    assert ROUTE_SETS["test10"].seeds == tuple(range(10)) and ROUTE_SETS["test20"].seeds == tuple(range(100, 120))
    assert ROUTE_SETS["test30"].seeds == ROUTE_SETS["test10"].seeds + ROUTE_SETS["test20"].seeds
    assert {r.split for r in ROUTE_SETS.values()} == {"test"}


@pytest.fixture
def tiny_routes(monkeypatch):
    from agents.scoring import ROUTE_SETS, RouteSet

    monkeypatch.setitem(ROUTE_SETS, "one", RouteSet("test", (3,)))
    monkeypatch.setitem(ROUTE_SETS, "two", RouteSet("test", (5, 6)))
    monkeypatch.setitem(ROUTE_SETS, "both", RouteSet("test", (3, 5, 6), ("one", "two")))


def test_routes_option_scores_each_seed_and_each_part_and_records_the_row(gt_policy, tiny_routes, tmp_path):
    import json

    options = ["--perception", "ground_truth", "--camera-size", "40", "80", "--max-steps", "5"]
    out = tmp_path / "row.json"
    assert evaluate.main([str(gt_policy), "--routes", "both", *options, "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    detail = row["episodes_detail"]
    assert row["routes"] == "both" and row["seeds"] == [3, 5, 6] and [d["seed"] for d in detail] == [3, 5, 6]
    assert row["parts"]["one"]["route_completion"] == pytest.approx(detail[0]["route_completion"])
    assert row["parts"]["two"]["route_completion"] == pytest.approx(
        (detail[1]["route_completion"] + detail[2]["route_completion"]) / 2
    )
    assert row["parts"]["two"]["episodes"] == 2
    assert row["command"].startswith("python -m agents.evaluate ") and "--routes both" in row["command"]
    assert row["policy_metadata"]["perception"] == "ground_truth" and row["perception_weights_sha256"] is None
    assert row["penalty_factors"]["collision_pedestrian"] == 0.5


def test_routes_option_refuses_episode_options_it_replaces(tiny_routes, tmp_path, capsys):
    out = tmp_path / "row.json"
    with pytest.raises(SystemExit) as err:
        evaluate.main(["random", "--routes", "both", "--episodes", "3", "--seed", "1", "--out", str(out)])
    assert err.value.code == 2 and "drop --episodes, --seed" in capsys.readouterr().err and not out.exists()


def test_trace_row_by_hand():
    info = {
        "speed": 3.21234,
        "route_completion": 0.5,
        "hazards": {"lead": float("inf"), "red_light": 6.5},
        "events": ["lane_invasion(dashed)", "red_light"],
        "termination": None,
    }
    row = evaluate.trace_row(7, np.array([0.25, -1.0], np.float32), -5.0, info)
    assert row == {
        "step": 7,
        "steer": 0.25,
        "acceleration": -1.0,
        "reward": -5.0,
        "speed": 3.212,
        "route_completion": 0.5,
        "lead_m": float("inf"),
        "red_light_m": 6.5,
        "emergency_brake": "",  # an env without the brake
        "events": "lane_invasion(dashed);red_light",
        "ending": "",
    }
    assert evaluate.trace_row(8, np.zeros(2), 0.0, info, "time_limit")["ending"] == "time_limit"
    assert evaluate.trace_row(9, np.zeros(2), 0.0, info | {"emergency_brake": True})["emergency_brake"] == 1


def test_trace_option_writes_every_step_of_every_episode(tmp_path):
    import csv
    import json

    out, traces = tmp_path / "eval.json", tmp_path / "traces"
    options = ["--perception", "ground_truth", "--camera-size", "40", "80", "--max-steps", "6", "--episodes", "2"]
    assert evaluate.main(["autopilot", *options, "--seed", "3", "--trace", str(traces), "--out", str(out)]) == 0
    detail = json.loads(out.read_text())["episodes_detail"]
    assert sorted(p.name for p in traces.iterdir()) == ["episode_0003.csv", "episode_0004.csv"]
    for episode in detail:
        with (traces / f"episode_{episode['seed']:04d}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == list(evaluate.TRACE_COLUMNS)
        assert [int(r["step"]) for r in rows] == list(range(1, episode["steps"] + 1))
        assert rows[-1]["ending"] == episode["termination"] and all(r["ending"] == "" for r in rows[:-1])
        assert float(rows[-1]["route_completion"]) == pytest.approx(episode["route_completion"], abs=1e-4)
        assert all(float(r["lead_m"]) > 0 and float(r["red_light_m"]) > 0 for r in rows)


def test_pedestrian_crossings_option_reaches_the_env_and_the_summary(tmp_path):
    import json

    out = tmp_path / "eval.json"
    options = ["--perception", "ground_truth", "--camera-size", "40", "80", "--max-steps", "3", "--episodes", "1"]
    flags = ["--pedestrian-crossings", "1", "--crossing-distance", "8", "12"]
    assert evaluate.main(["autopilot", *options, *flags, "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["pedestrian_crossings"] == 1.0 and summary["crossing_distance_m"] == [8.0, 12.0]
    assert 8.0 <= summary["episodes_detail"][0]["crossing_m"] <= 12.0
    assert "--pedestrian-crossings 1 --crossing-distance 8 12" in summary["command"]


@pytest.mark.parametrize("flag", ["--video", "--trace"])
def test_a_file_where_a_folder_of_episodes_goes_is_a_usage_error(flag, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    with pytest.raises(SystemExit) as err:
        evaluate.main(["random", "--episodes", "1", flag, str(taken)])
    assert err.value.code == 2 and f"{flag} {taken} is a file" in capsys.readouterr().err
    assert taken.read_text() == "mine"


def test_emergency_brake_option_is_recorded_and_each_episode_counts_its_braked_steps(tmp_path):
    import json
    from dataclasses import asdict

    from carla_gym.env.emergency_brake import EmergencyBrakeConfig

    out = tmp_path / "eval.json"
    assert evaluate.main(["autopilot", *GT, "--emergency-brake", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["emergency_brake"] == asdict(EmergencyBrakeConfig()) | {"groups": ["vehicle", "pedestrian"]}
    assert "--emergency-brake" in summary["command"]
    assert (
        evaluate.main(["autopilot", *GT, "--emergency-brake", "pedestrian", "min_height_m=0.3", "--out", str(out)]) == 0
    )
    brake = json.loads(out.read_text())["emergency_brake"]
    assert brake["groups"] == ["pedestrian"] and brake["gaps"]["min_height_m"] == 0.3
    assert evaluate.main(["autopilot", *GT, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["emergency_brake"] is None

    # a full-throttle driver into a crossing pedestrian (tests/test_emergency_brake.py): the brake's steps counted
    options = dict(perception="ground_truth", camera_size=(40, 80), split="val")
    env = gym.make(
        "CarlaPerception-v0",
        max_episode_steps=60,
        pedestrian_crossings=1.0,
        crossing_distance_m=(10.0, 12.0),
        emergency_brake=True,
        **options,
    )
    braked = []
    original_step = env.step

    def step(action):
        result = original_step(action)
        braked.append(result[-1]["emergency_brake"])
        return result

    env.step = step  # type: ignore[method-assign]
    result = evaluate.run_episode(env, lambda obs, env: np.array([0.0, 1.0], np.float32), seed=3)
    env.close()
    assert result.infractions["collision_pedestrian"] == 0
    assert result.emergency_brake_steps == sum(braked) > 0
