"""Bad options and calls give clear errors up front: sizes, route lengths, towns and splits, actions, closed envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import carla_gym  # noqa: F401  (registers the envs)
from carla_gym.env.task import check_action
from carla_gym.sim import make_backend
from carla_gym.sim.contract import MAX_ROUTE_LENGTH, check_image_size, check_route_length

SMALL = dict(perception="ground_truth", camera_size=(32, 64), obs_size=(8, 16), vehicles=0, pedestrians=0)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -5.0, MAX_ROUTE_LENGTH * 2, 1e8, "far", None])
def test_route_length_out_of_range_is_rejected(value):
    with pytest.raises(ValueError, match="route_length"):
        check_route_length(value)


@pytest.mark.parametrize("value, expected", [(200, 200.0), ("150.5", 150.5), (MAX_ROUTE_LENGTH, MAX_ROUTE_LENGTH)])
def test_route_length_accepted(value, expected):
    assert check_route_length(value) == expected


@pytest.mark.parametrize("value", ["128x256", (2, 3, 4), (128,), (0, 64), (-1, 64), (32.5, 64), (True, 64), 128, None])
def test_malformed_image_size_is_rejected(value):
    with pytest.raises(ValueError, match="camera_size"):
        check_image_size(value, "camera_size")


@pytest.mark.parametrize("value", [(32, 64), [32, 64], (np.int64(32), 64.0), np.array([32, 64])])
def test_image_size_accepted(value):
    assert check_image_size(value) == (32, 64)


@pytest.mark.parametrize("route_length", [float("inf"), 1e8, -1.0])
def test_env_rejects_route_length_in_config_and_reset_options(route_length):
    with pytest.raises(ValueError, match="route_length"):
        gym.make("CarlaPerception-v0", route_length=route_length, **SMALL)
    env = gym.make("CarlaPerception-v0", **SMALL)
    try:
        with pytest.raises(ValueError, match="reset option route_length"):
            env.reset(seed=0, options={"route_length": route_length})
        env.reset(seed=0, options={"route_length": 50.0})  # the env is still usable afterwards
    finally:
        env.close()


@pytest.mark.parametrize(
    "camera_size, obs_size, match",
    [
        ("128x256", (8, 16), "camera_size"),
        ((2, 3, 4), (8, 16), "camera_size"),
        ((32, 64), (0, 16), "obs_size"),
        ((32, 64), (64, 16), "must not exceed camera_size"),
        ((32, 64), (8, 128), "must not exceed camera_size"),
    ],
)
def test_env_rejects_bad_sizes(camera_size, obs_size, match):
    with pytest.raises(ValueError, match=match):
        gym.make("CarlaPerception-v0", **{**SMALL, "camera_size": camera_size, "obs_size": obs_size})


def test_town_from_another_split_is_an_error():
    backend = carla_gym.sim.backend_class("embedded")
    train_town, test_town = backend.towns("train")[0], backend.towns("test")[0]
    with pytest.raises(ValueError, match=f"{train_town!r} is not in the 'test' split"):
        gym.make("CarlaPerception-v0", split="test", town=train_town, **SMALL)
    with pytest.raises(ValueError, match="is not in the 'test' split"):
        gym.make("CarlaPerception-v0", split="test", town=7, **SMALL)  # a seeded random town belongs to no split
    env = gym.make("CarlaPerception-v0", split="test", town=test_town, **SMALL)
    try:
        assert env.unwrapped.sim.town_name == test_town
    finally:
        env.close()


@pytest.mark.parametrize("town", [-1, 2.5, True])
def test_bad_town_seed_is_rejected(town):
    with pytest.raises(ValueError, match="non-negative int seed"):
        make_backend("embedded", town=town, size=(32, 64), render=False)


@pytest.mark.parametrize("action", [np.zeros((1, 2)), np.zeros((2, 1)), np.zeros(3), [[0.1, 0.2]], "ab", [0.1, "x"]])
def test_continuous_action_of_wrong_shape_or_type_is_rejected(action):
    with pytest.raises(ValueError, match="action must be"):
        check_action(action, discrete=False)


@pytest.mark.parametrize(
    "action, expected",
    [
        ([1e39, -1e39], [1.0, -1.0]),  # finite, beyond float32: clipped like any out-of-range value
        ((0.25, -0.5), [0.25, -0.5]),
        (np.array([2.0, 0.5], np.float32), [1.0, 0.5]),
    ],
)
def test_continuous_action_is_clipped(action, expected):
    a = check_action(action, discrete=False)
    assert a.dtype == np.float32 and a.tolist() == expected


@pytest.mark.parametrize("action", [[np.inf, 0.0], [0.0, np.nan]])
def test_non_finite_action_is_rejected(action):
    with pytest.raises(ValueError, match="finite"):
        check_action(action, discrete=False)


def test_calls_after_close_raise_a_clear_error():
    env = gym.make("CarlaPerception-v0", render_mode="rgb_array", **SMALL)
    env.reset(seed=0)
    env.close()
    env.close()  # twice is fine
    for call in (
        lambda: env.reset(seed=0),
        lambda: env.step(np.zeros(2, np.float32)),
        env.render,
        lambda: env.unwrapped.sim,
    ):
        with pytest.raises(RuntimeError, match="closed"):
            call()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"route_length": float("inf")}, "CarlaConfig.route_length"),
        ({"size": "128x256"}, "CarlaConfig.size"),
    ],
)
def test_carla_config_validates_route_length_and_size(options, match):
    from carla_gym.sim.carla_backend.backend import CarlaConfig

    with pytest.raises(ValueError, match=match):
        CarlaConfig(**options)
