"""Road-user gaps along the route, on tiny hand-built observations (4x8 cells, 90 degree camera: focal
length 4 cells, so column c looks (c + 0.5 - 4) / 4 metres right per metre of depth)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_gym.env.observation import NUM_WAYPOINTS, SEMANTIC_GROUPS, WAYPOINT_SCALE_M, depth_metres, normalise_depth
from carla_gym.env.road_user_gaps import RoadUserGapConfig, road_user_gaps, route_corridor
from tests.benchmark_scripts import load_benchmark

H, W = 4, 8
CAMERA_X, BUMPER = 1.6, 2.35
VEHICLE, PEDESTRIAN = list(SEMANTIC_GROUPS).index("vehicle"), list(SEMANTIC_GROUPS).index("pedestrian")


def route_at(heading: float) -> np.ndarray:
    """A straight route from the ego at `heading` (radians, positive to the right), as the `route` vector."""
    s = 2.0 * np.arange(1, NUM_WAYPOINTS + 1)
    waypoints = np.stack([s * math.cos(heading), s * math.sin(heading)], axis=1)
    return (waypoints / WAYPOINT_SCALE_M).reshape(1, -1).astype(np.float32)


def observation(cells: list[tuple[int, int, float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, depth) with each (group, column, depth m, probability x 255) cell in row 2; 100 m elsewhere."""
    semantic = np.zeros((1, len(SEMANTIC_GROUPS), H, W), np.uint8)
    depth = np.full((1, 1, H, W), normalise_depth(np.array(100.0)), np.uint8)
    for group, column, metres, probability in cells:
        semantic[0, group, 2, column] = probability
        depth[0, 0, 2, column] = normalise_depth(np.array(metres))
    return semantic, depth


def ahead_of_bumper(metres: float) -> float:
    """The gap a cell at `metres` depth gives: its decoded depth from the camera, minus the bumper's offset."""
    return float(depth_metres(normalise_depth(np.array(metres)))) + CAMERA_X - BUMPER


@pytest.mark.parametrize(
    "cells, heading, expected",
    [
        # a pedestrian 10 m ahead, 1.25 m right of a straight route: in the corridor (1.6 m)
        ([(PEDESTRIAN, 4, 10.0, 255)], 0.0, (40.0, ahead_of_bumper(10.0))),
        # the same on the kerb, 8.75 m right: not in the path
        ([(PEDESTRIAN, 7, 10.0, 255)], 0.0, (40.0, 40.0)),
        # a vehicle 7 m right at 8 m depth lies on a route bending right towards it
        ([(VEHICLE, 7, 8.0, 255)], math.atan2(7.0, 8.0 + CAMERA_X), (ahead_of_bumper(8.0), 40.0)),
        # a faint pedestrian (probability 0.2 < 0.3) does not count
        ([(PEDESTRIAN, 4, 10.0, 51)], 0.0, (40.0, 40.0)),
        # two vehicles in the path (1.25 m left at 10 m, 0.75 m right at 6 m): the nearer one
        ([(VEHICLE, 3, 10.0, 255), (VEHICLE, 4, 6.0, 255)], 0.0, (ahead_of_bumper(6.0), 40.0)),
        # beyond the range (40 m from the bumper): none
        ([(VEHICLE, 4, 45.0, 255)], 0.0, (40.0, 40.0)),
        # 35 m deep, 4.4 m right: past the route vector's 20 m, on the extension of a route heading there
        ([(VEHICLE, 4, 35.0, 255)], math.atan2(0.125 * 35.0, 35.0 + CAMERA_X), (ahead_of_bumper(35.0), 40.0)),
    ],
)
def test_gaps_are_the_nearest_road_user_of_each_group_in_the_corridor(cells, heading, expected):
    semantic, depth = observation(cells)
    gaps = road_user_gaps(semantic, depth, route_at(heading))
    assert gaps.shape == (1, 2)
    np.testing.assert_allclose(gaps[0], expected, atol=1e-4)


def test_a_road_user_at_the_bumper_gives_zero_and_one_behind_it_none():
    semantic, depth = observation([(PEDESTRIAN, 4, 0.6, 255)])  # 0.15 m behind the bumper: at it
    assert road_user_gaps(semantic, depth, route_at(0.0))[0, 1] == 0.0
    semantic, depth = observation([(PEDESTRIAN, 4, 0.1, 255)])  # 0.65 m behind the bumper: not ahead
    assert road_user_gaps(semantic, depth, route_at(0.0))[0, 1] == 40.0


def test_gaps_are_per_observation_in_a_batch_and_the_config_sets_range_and_corridor():
    near, _ = observation([(PEDESTRIAN, 4, 10.0, 255)])
    far, depth_far = observation([(PEDESTRIAN, 4, 12.0, 255)])  # 1.5 m right
    _, depth_near = observation([(PEDESTRIAN, 4, 10.0, 255)])
    semantic, depth = np.concatenate([near, far]), np.concatenate([depth_near, depth_far])
    route = np.repeat(route_at(0.0), 2, axis=0)
    np.testing.assert_allclose(
        road_user_gaps(semantic, depth, route)[:, 1], [ahead_of_bumper(10.0), ahead_of_bumper(12.0)], atol=1e-4
    )
    short = road_user_gaps(semantic, depth, route, config=RoadUserGapConfig(range_m=10.0))
    np.testing.assert_allclose(short[:, 1], [ahead_of_bumper(10.0), 10.0], atol=1e-4)
    narrow = road_user_gaps(semantic, depth, route, config=RoadUserGapConfig(half_width_m=1.2))  # 1.25 and 1.5 m right
    np.testing.assert_allclose(narrow[:, 1], [40.0, 40.0])


def test_the_corridor_follows_the_waypoints_and_goes_on_straight_past_them():
    route = route_at(math.radians(30.0))
    corridor = route_corridor(route, 40.0)[0]
    np.testing.assert_allclose(corridor[0], [0.0, 0.0])
    assert np.linalg.norm(corridor[-1]) >= 40.0 + BUMPER  # gaps reach 40 m past the bumper
    headings = np.arctan2(corridor[1:, 1], corridor[1:, 0])
    np.testing.assert_allclose(headings, math.radians(30.0), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.diff(corridor, axis=0), axis=1), 0.5, atol=1e-6)


def test_brake_fit_appends_the_gaps_over_their_range_to_the_route_vector():
    brake_fit = load_benchmark("brake_fit")
    obs = {"route": np.zeros((2, 2 * NUM_WAYPOINTS), np.float32), "state": np.ones((2, 7), np.float32)}
    labels, returns = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    extended, same_labels, _ = brake_fit.with_gaps((obs, labels, returns), np.array([[4.0, 40.0], [10.0, 20.0]]))
    np.testing.assert_allclose(extended["route"][:, -2:], [[0.1, 1.0], [0.25, 0.5]])
    np.testing.assert_array_equal(extended["route"][:, :-2], obs["route"])
    assert extended["state"] is obs["state"] and same_labels is labels


def test_env_option_adds_the_key_read_off_its_own_maps_and_sees_a_crossing_pedestrian():
    import gymnasium as gym

    from carla_gym.env.road_user_gaps import road_user_observation

    options = dict(perception="ground_truth", camera_size=(40, 80), split="val", expert_action=True)
    crossing = dict(pedestrian_crossings=1.0, crossing_distance_m=(10.0, 12.0))
    plain = gym.make("CarlaPerception-v0", **options)
    assert "road_users" not in plain.observation_space.spaces and "road_users" not in plain.reset(seed=3)[0]
    plain.close()
    env = gym.make("CarlaPerception-v0", road_user_gaps=True, **options, **crossing)
    obs, info = env.reset(seed=3)
    pedestrian_gaps = []
    for _ in range(40):
        assert obs in env.observation_space
        np.testing.assert_allclose(obs["road_users"], road_user_observation(obs))
        pedestrian_gaps.append(float(obs["road_users"][1]) * 40.0)
        obs, _, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    env.close()
    assert pedestrian_gaps[0] == 40.0  # on the kerb at the start
    assert min(pedestrian_gaps) < 12.0  # in the path once it steps out


def test_vector_env_worlds_each_get_the_key():
    from carla_gym import make_vec
    from carla_gym.env.road_user_gaps import road_user_observation

    vec = make_vec(2, perception="ground_truth", camera_size=(40, 80), road_user_gaps=True)
    try:
        vec.seed(0)
        obs = vec.reset()  # SB3's VecEnv API
        assert vec.observation_space["road_users"].shape == (2,) and obs["road_users"].shape == (2, 2)
        for i in range(2):
            world = {k: v[i] for k, v in obs.items()}
            np.testing.assert_allclose(obs["road_users"][i], road_user_observation(world))
    finally:
        vec.close()


@pytest.mark.parametrize(
    "backend_options, camera_x",
    [({}, CAMERA_X), ({"camera_forward": 2.0}, 2.0), ({"camera_location": (1.0, 0.0, 1.5)}, 1.0)],
)
def test_env_config_places_the_cells_with_the_backends_camera(backend_options, camera_x):
    from carla_gym.env.config import EnvConfig

    semantic, depth = observation([(PEDESTRIAN, 4, 10.0, 255)])
    obs = {"semantic": semantic[0], "depth": depth[0], "route": route_at(0.0)[0]}
    config = EnvConfig(perception="ground_truth", road_user_gaps=True, backend_options=backend_options)
    expected = (ahead_of_bumper(10.0) - CAMERA_X + camera_x) / 40.0
    np.testing.assert_allclose(config.observe(obs)["road_users"], [1.0, expected], atol=1e-5)
    assert "road_users" not in EnvConfig(perception="ground_truth").observe(obs) and "road_users" not in obs


@pytest.mark.parametrize("min_cells, expected", [(1, ahead_of_bumper(6.0)), (2, ahead_of_bumper(10.0)), (3, 40.0)])
def test_min_cells_is_the_distance_within_which_that_many_cells_lie(min_cells, expected):
    semantic, depth = observation([(PEDESTRIAN, 4, 6.0, 255), (PEDESTRIAN, 3, 10.0, 255)])  # both in the path
    gaps = road_user_gaps(semantic, depth, route_at(0.0), config=RoadUserGapConfig(min_cells=min_cells))
    assert gaps[0, 1] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="min_cells"):
        RoadUserGapConfig(min_cells=0)


@pytest.mark.parametrize(
    "metres, min_height_m, expected",
    [
        # row 2's lower edge looks 0.25 m down per metre of depth from 1.4 m up: at 5.6 m it meets the road
        (5.6, 0.0, ahead_of_bumper(5.6)),  # every cell counts by default
        (5.6, 0.3, 40.0),  # a road user painted on the road does not stand up from it
        (4.0, 0.3, ahead_of_bumper(4.0)),  # 0.4 m above the road
        (4.0, 0.5, 40.0),
    ],
)
def test_min_height_leaves_out_cells_on_the_road_plane(metres, min_height_m, expected):
    semantic, depth = observation([(VEHICLE, 4, metres, 255), (PEDESTRIAN, 4, metres, 255)])
    gaps = road_user_gaps(semantic, depth, route_at(0.0), config=RoadUserGapConfig(min_height_m=min_height_m))
    np.testing.assert_allclose(gaps[0], [expected, expected], atol=1e-4)
    with pytest.raises(ValueError, match="min_height_m"):
        RoadUserGapConfig(min_height_m=-0.1)


@pytest.mark.parametrize(
    "backend_options, expected",
    [
        ({}, ((CAMERA_X, 0.0, 1.4), 90.0)),
        ({"camera_forward": 2.0, "camera_height": 1.7, "fov": 100.0}, ((2.0, 0.0, 1.7), 100.0)),
        ({"camera_location": (1.0, 0.2, 1.5)}, ((1.0, 0.2, 1.5), 90.0)),
    ],
)
def test_env_config_camera_geometry_follows_the_backend_options(backend_options, expected):
    from carla_gym.env.config import EnvConfig

    config = EnvConfig(perception="ground_truth", backend_options=backend_options)
    assert config.camera_geometry() == expected
