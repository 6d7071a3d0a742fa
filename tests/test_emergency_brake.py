"""The emergency brake under a policy: its stopping distance by hand, when it acts on hand-built observations
(`tests.test_road_user_gaps`' 4x8 cells), the env option's values, and on the env (one, or every world of the
vector envs), a full-throttle driver stopped short of a crossing pedestrian it would otherwise hit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from carla_gym.env import DISCRETE_ACTIONS, EnvConfig, make_vec
from carla_gym.env.emergency_brake import BRAKE_COLOUR, EmergencyBrakeConfig
from carla_gym.env.observation import STATE_SPEED_SCALE
from carla_gym.env.road_user_gaps import RoadUserGapConfig
from carla_gym.sim.contract import DEFAULT_CAMERA_LOCATION, DEFAULT_FOV
from tests.test_road_user_gaps import PEDESTRIAN, VEHICLE, ahead_of_bumper, observation, route_at

CAMERA = (DEFAULT_CAMERA_LOCATION, DEFAULT_FOV)
# pedestrians only, at any speed, the gaps' own defaults (a 1.6 m corridor, the nearest cell): each case below
# changes one of these
BASE = EmergencyBrakeConfig(groups=("pedestrian",), min_speed=0.0, gaps=RoadUserGapConfig())


@pytest.mark.parametrize(
    "speed, config, expected",
    [
        (0.0, EmergencyBrakeConfig(), 2.5),  # the margin alone
        (6.0, EmergencyBrakeConfig(), 0.6 + 3.0 + 2.5),  # 6 * 0.1 s + 36 / (2 * 6) + 2.5
        (4.0, EmergencyBrakeConfig(margin_m=1.0, reaction_s=0.5, deceleration=8.0), 2.0 + 1.0 + 1.0),
        (-1.0, EmergencyBrakeConfig(), 2.5),  # reversing counts as standing
    ],
)
def test_stopping_distance(speed, config, expected):
    assert config.stopping_distance(speed) == pytest.approx(expected)


def one_observation(cells: list[tuple[int, int, float, int]], speed: float) -> dict[str, np.ndarray]:
    semantic, depth = observation(cells)
    state = np.zeros(7, np.float32)
    state[0] = speed / STATE_SPEED_SCALE
    return {"semantic": semantic[0], "depth": depth[0], "route": route_at(0.0)[0], "state": state}


PEDESTRIAN_4M = (PEDESTRIAN, 4, 4.0, 255)  # in the path, ahead_of_bumper(4.0) = 3.25 m from the bumper


@pytest.mark.parametrize(
    "cells, speed, config, brakes",
    [
        ([PEDESTRIAN_4M], 3.0, BASE, True),  # 3.25 m < 0.3 + 0.75 + 2.5 m
        ([PEDESTRIAN_4M], 2.0, BASE, False),  # 3.25 m > 0.2 + 0.33 + 2.5 m
        ([PEDESTRIAN_4M], 0.5, replace(BASE, margin_m=3.5), True),
        ([(PEDESTRIAN, 7, 4.0, 255)], 5.0, BASE, False),  # on the kerb, 2.6 m right
        ([(VEHICLE, 4, 4.0, 255)], 3.0, BASE, False),  # vehicles only when asked for
        ([(VEHICLE, 4, 4.0, 255)], 3.0, replace(BASE, groups=("vehicle", "pedestrian")), True),
        ([PEDESTRIAN_4M], 3.0, replace(BASE, min_speed=3.5), False),  # standing-ish: the policy's to start
        # one cell alone is not enough under min_cells=2; two are
        ([PEDESTRIAN_4M], 3.0, replace(BASE, gaps=RoadUserGapConfig(min_cells=2)), False),
        (
            [PEDESTRIAN_4M, (PEDESTRIAN, 3, 4.0, 255)],
            3.0,
            replace(BASE, gaps=RoadUserGapConfig(min_cells=2)),
            True,
        ),
        # 1.5 m right of the route: in the gaps' 1.6 m corridor, not in a 1.2 m one
        ([(PEDESTRIAN, 5, 4.0, 255)], 3.0, BASE, True),
        ([(PEDESTRIAN, 5, 4.0, 255)], 3.0, replace(BASE, gaps=RoadUserGapConfig(half_width_m=1.2)), False),
        # 5.6 m deep in row 2 lies on the road 4.85 m ahead: within 5.08 m at 5 m/s, unless cells must stand up
        ([(PEDESTRIAN, 4, 5.6, 255)], 5.0, BASE, True),
        ([(PEDESTRIAN, 4, 5.6, 255)], 5.0, replace(BASE, gaps=RoadUserGapConfig(min_height_m=0.3)), False),
        ([(PEDESTRIAN, 4, 4.0, 255)], 3.0, replace(BASE, gaps=RoadUserGapConfig(min_height_m=0.3)), True),  # 0.4 m up
        # the defaults: either road user, two cells in a 1.2 m corridor, above 1 m/s
        ([(VEHICLE, 4, 4.0, 255), (VEHICLE, 3, 4.0, 255)], 3.0, EmergencyBrakeConfig(), True),
        ([(VEHICLE, 4, 4.0, 255)], 3.0, EmergencyBrakeConfig(), False),
        ([PEDESTRIAN_4M, (PEDESTRIAN, 3, 4.0, 255)], 0.9, replace(EmergencyBrakeConfig(), margin_m=3.5), False),
    ],
)
def test_brakes_for_a_road_user_of_its_groups_within_stopping_distance(cells, speed, config, brakes):
    assert ahead_of_bumper(4.0) == pytest.approx(3.25, abs=0.05)
    assert config.brakes(one_observation(cells, speed), CAMERA) is brakes


@pytest.mark.parametrize(
    "options, message",
    [
        ({"groups": ()}, "groups"),
        ({"groups": ("cyclist",)}, "groups"),
        ({"margin_m": -1.0}, "margin_m"),
        ({"min_speed": -0.1}, "min_speed"),
        ({"deceleration": 0.0}, "deceleration"),
    ],
)
def test_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        EmergencyBrakeConfig(**options)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (False, None),
        (True, EmergencyBrakeConfig()),
        (EmergencyBrakeConfig(margin_m=1.0), EmergencyBrakeConfig(margin_m=1.0)),
        # a dict of fields, as JSON and RLlib's env_config give them: lists for tuples, a dict for the gaps
        (
            {"groups": ["pedestrian"], "gaps": {"half_width_m": 1.0}},
            EmergencyBrakeConfig(groups=("pedestrian",), gaps=RoadUserGapConfig(half_width_m=1.0)),
        ),
    ],
)
def test_the_env_option_takes_a_config_a_dict_or_a_switch(value, expected):
    assert EnvConfig(perception="ground_truth", emergency_brake=value).emergency_brake == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes", "emergency_brake: expected true, false, an EmergencyBrakeConfig or a dict"),
        ({"groups": ["cyclist"]}, "emergency_brake: groups must be"),
        ({"margin": 1.0}, "emergency_brake: .*margin"),
        ({"gaps": {"min_cells": 0}}, "emergency_brake: min_cells must be >= 1"),
    ],
)
def test_the_env_option_names_a_bad_value(value, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(perception="ground_truth", emergency_brake=value)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ([], EmergencyBrakeConfig()),
        (["margin_m=1", "groups=pedestrian"], EmergencyBrakeConfig(margin_m=1.0, groups=("pedestrian",))),
        (
            ["min_cells=3", "min_height_m=0.3"],  # the gaps' fields; the brake's own gap defaults are kept
            EmergencyBrakeConfig(gaps=RoadUserGapConfig(half_width_m=1.2, min_cells=3, min_height_m=0.3)),
        ),
    ],
)
def test_with_changes_sets_the_brakes_fields_or_its_gaps(changes, expected):
    assert EmergencyBrakeConfig().with_changes(changes) == expected


@pytest.mark.parametrize(
    "change, message",
    [
        ("margin=1", "'margin=1' is not FIELD=VALUE with a field of bumper_m, deceleration"),
        ("margin_m", "'margin_m' is not FIELD=VALUE"),
        ("min_cells=1.5", "'min_cells=1.5' has no number for min_cells"),
        ("deceleration=0", "deceleration must be positive, got 0.0"),
        ("groups=vehicle,cyclist", "groups must be a non-empty subset"),
    ],
)
def test_with_changes_names_a_bad_change(change, message):
    with pytest.raises(ValueError, match=message):
        EmergencyBrakeConfig().with_changes([change])


OPTIONS = dict(perception="ground_truth", camera_size=(40, 80), split="val")
CROSSING = dict(pedestrian_crossings=1.0, crossing_distance_m=(10.0, 12.0))
FULL_THROTTLE = np.array([0.0, 1.0], np.float32)
# the discrete action nearest (straight, full throttle)
FULL_THROTTLE_DISCRETE = int(np.argmin([np.abs(np.asarray(a) - FULL_THROTTLE).sum() for a in DISCRETE_ACTIONS]))


def drive_full_throttle(
    env: gym.Env, seed: int, steps: int = 60, action: Any = FULL_THROTTLE
) -> tuple[dict, list[dict], list[np.ndarray]]:
    """Steer straight at full throttle; the last info, every step's info and every observation's `state`."""
    obs, _ = env.reset(seed=seed)
    infos, states = [], [obs["state"]]
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        states.append(obs["state"])
        if terminated or truncated:
            break
    return info, infos, states


@pytest.mark.parametrize("seed", [3, 4])
def test_the_brake_stops_a_full_throttle_driver_short_of_a_crossing_pedestrian(seed):
    plain = gym.make("CarlaPerception-v0", **OPTIONS, **CROSSING)
    last, infos, _ = drive_full_throttle(plain, seed)
    plain.close()
    assert last["infractions"]["collision_pedestrian"] == 1  # without it, the pedestrian is hit
    assert not any("emergency_brake" in info for info in infos)

    env = gym.make("CarlaPerception-v0", emergency_brake=True, **OPTIONS, **CROSSING)
    last, infos, states = drive_full_throttle(env, seed)
    env.close()
    assert last["infractions"]["collision_pedestrian"] == 0
    braked = [i for i, info in enumerate(infos) if info["emergency_brake"]]
    assert braked and not infos[0]["emergency_brake"]
    # the observation after a braked step reports the brake it applied (the state's last acceleration)
    assert all(states[i + 1][2] == -1.0 for i in braked)


def test_the_brake_acts_on_discrete_actions_too():
    assert DISCRETE_ACTIONS[FULL_THROTTLE_DISCRETE][1] > 0.5
    env = gym.make("CarlaPerception-v0", discrete=True, emergency_brake=True, **OPTIONS, **CROSSING)
    last, infos, states = drive_full_throttle(env, 3, action=FULL_THROTTLE_DISCRETE)
    env.close()
    assert last["infractions"]["collision_pedestrian"] == 0
    braked = [i for i, info in enumerate(infos) if info["emergency_brake"]]
    assert braked and all(states[i + 1][2] == -1.0 for i in braked)


def test_the_brake_leaves_a_drive_without_road_users_alone():
    env = gym.make("CarlaPerception-v0", emergency_brake=True, **OPTIONS)
    _, infos, _ = drive_full_throttle(env, seed=0, steps=30)
    env.close()
    assert not any(info["emergency_brake"] for info in infos)


@pytest.mark.timeout(300)
def test_every_world_of_a_vector_env_brakes_as_one_env_does():
    """World i of `gym.make_vec` and of `carla_gym.make_vec` (seed 3 + i, town i of the split) brakes on the same
    steps as `gym.make` with that seed and town, and hits nobody."""
    singles = []
    for i in range(2):
        env = gym.make("CarlaPerception-v0", emergency_brake=True, town_index=i, **OPTIONS, **CROSSING)
        singles.append([info["emergency_brake"] for info in drive_full_throttle(env, 3 + i, steps=40)[1]])
        env.close()
    assert all(any(braked) for braked in singles)

    envs = gym.make_vec("CarlaPerception-v0", num_envs=2, emergency_brake=True, **OPTIONS, **CROSSING)
    try:
        envs.reset(seed=3)
        vector = [envs.step(np.tile(FULL_THROTTLE, (2, 1)))[-1] for _ in range(40)]
    finally:
        envs.close()
    for i in range(2):
        steps = len(singles[i])  # an episode that ended early starts over in the vector env
        assert [bool(info["emergency_brake"][i]) for info in vector[:steps]] == singles[i]
        assert all(info["infractions"]["collision_pedestrian"][i] == 0 for info in vector[:steps])

    sb3 = make_vec(2, EnvConfig(emergency_brake=True, **OPTIONS, **CROSSING))
    try:
        sb3.seed(3)
        sb3.reset()
        infos = []
        for _ in range(max(len(braked) for braked in singles)):
            sb3.step_async(np.tile(FULL_THROTTLE, (2, 1)))
            infos.append(sb3.step_wait()[-1])
    finally:
        sb3.close()
    for i in range(2):
        assert [info[i]["emergency_brake"] for info in infos[: len(singles[i])]] == singles[i]


def test_render_frames_the_dashboard_in_red_after_a_braked_step():
    env = gym.make("CarlaPerception-v0", render_mode="rgb_array", emergency_brake=True, **OPTIONS, **CROSSING)
    env.reset(seed=3)
    red = np.array(BRAKE_COLOUR, np.uint8)
    framed = []
    for _ in range(40):
        *_, info = env.step(FULL_THROTTLE)
        picture = env.render()
        assert picture.shape == env.unwrapped.task.dashboard(None, None, "ground_truth").shape
        framed.append((info["emergency_brake"], bool((picture[1, 1] == red).all())))
        if info["emergency_brake"]:
            break
    env.close()
    assert framed[-1] == (True, True) and all(not f for _, f in framed[:-1])
