"""The driving task's vector observation: what the agent is told and what it must perceive."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_frame

from carla_gym.env import RewardConfig, target_speed
from carla_gym.env.task import DrivingTask
from carla_gym.sim import Hazards


@pytest.mark.parametrize(
    "hazards, signal_speed, reward_speed",
    [
        (Hazards(), 8.0, 8.0),  # free road: cruise speed for both
        (Hazards(lead=10.0), 8.0, 2.0),  # a lead vehicle 10 m ahead: (10 - 5) / 20 * 8 m/s, for the reward only
        (Hazards(red_light=15.0), 4.0, 4.0),  # a red light 15 m ahead: (15 - 5) / 20 * 8 m/s for both
        (Hazards(lead=3.0, red_light=40.0), 8.0, 0.0),  # lead within the stop margin; the light is beyond the slowdown
    ],
)
def test_state_speed_ignores_other_road_users(hazards, signal_speed, reward_speed):
    task = DrivingTask(sim=None, reward=RewardConfig())
    task.last_action = np.zeros(2, np.float32)
    frame = dataclasses.replace(make_frame(0), hazards=hazards)
    state = task.vector_observation(frame)["state"]
    assert state[3] == pytest.approx(signal_speed / 10.0)
    assert target_speed(hazards, task.reward_config) == pytest.approx(reward_speed)
