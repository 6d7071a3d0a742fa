"""The env's shared contracts: termination reasons, infraction kinds and the action <-> control mapping."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import make_frame

from agents.scoring import NOT_PENALISED, PENALTY_FACTORS, EpisodeResult
from carla_gym.env import RewardConfig
from carla_gym.env.contracts import (
    ENDINGS,
    Infraction,
    Termination,
    Truncation,
    action_to_control,
    control_to_action,
    controls_to_actions,
)
from carla_gym.env.task import DrivingTask
from carla_gym.sim import Control, Event, EventKind, SimulatorError
from carla_gym.sim.contract import CLASS_IDS


@pytest.mark.parametrize(
    "member, value",
    [
        (Termination.ROUTE_COMPLETED, "route_completed"),
        (Termination.COLLISION, "collision"),
        (Termination.OFF_ROAD, "off_road"),
        (Termination.OFF_ROUTE, "off_route"),
        (Termination.BLOCKED, "blocked"),
        (Termination.RED_LIGHT, "red_light"),
        (Truncation.TIME_LIMIT, "time_limit"),
        (Truncation.SIMULATOR_FAULT, "simulator_fault"),
        (Infraction.COLLISION_PEDESTRIAN, "collision_pedestrian"),
        (Infraction.COLLISION_VEHICLE, "collision_vehicle"),
        (Infraction.COLLISION_STATIC, "collision_static"),
        (Infraction.RED_LIGHT, "red_light"),
        (Infraction.LANE_INVASION, "lane_invasion"),
        (Infraction.OFF_ROAD, "off_road"),
    ],
)
def test_members_read_as_the_plain_strings(member, value):
    assert member == value and {value: 1}[member] == 1 and {member: 1}[value] == 1
    assert str(member) == value and f"tag/{member}" == f"tag/{value}"
    assert json.dumps({member: member}) == json.dumps({value: value})


def test_enums_list_every_reason_and_infraction():
    assert ENDINGS == (
        "route_completed",
        "collision",
        "off_road",
        "off_route",
        "blocked",
        "red_light",
        "time_limit",
        "simulator_fault",
    )
    assert len(Infraction) == 6


@pytest.mark.parametrize(
    "event, infraction",
    [
        (Event(EventKind.COLLISION, other_class=CLASS_IDS["Pedestrian"]), Infraction.COLLISION_PEDESTRIAN),
        (Event(EventKind.COLLISION, other_class=CLASS_IDS["Vehicles"]), Infraction.COLLISION_VEHICLE),
        (Event(EventKind.COLLISION, other_class=CLASS_IDS["Building"]), Infraction.COLLISION_STATIC),
        (Event(EventKind.COLLISION), Infraction.COLLISION_STATIC),
        (Event(EventKind.RED_LIGHT), Infraction.RED_LIGHT),
        (Event(EventKind.LANE_INVASION, detail="solid"), Infraction.LANE_INVASION),
        (Event(EventKind.OFF_ROAD), Infraction.OFF_ROAD),
    ],
)
def test_every_event_counts_as_an_infraction(event, infraction):
    assert Infraction.of(event) is infraction


def test_scoring_decides_every_infraction():
    assert set(PENALTY_FACTORS) | NOT_PENALISED == set(Infraction)
    assert not set(PENALTY_FACTORS) & NOT_PENALISED
    assert all(isinstance(k, Infraction) and 0.0 < f < 1.0 for k, f in PENALTY_FACTORS.items())
    # Keys as the env's info (and a JSON file) write them: plain strings. 0.60 * 0.70 ** 2; lane invasions are free.
    episode = EpisodeResult(1.0, 100.0, {"collision_vehicle": 1, "red_light": 2, "lane_invasion": 5, "off_road": 1})
    assert episode.infraction_penalty == pytest.approx(0.294)


@pytest.mark.parametrize(
    "control, action",
    [
        (Control(), (0.0, 0.0)),
        (Control(steer=-0.5, throttle=0.6), (-0.5, 0.6)),
        (Control(steer=0.15, brake=1.0), (0.15, -1.0)),
        (Control(steer=1.0, throttle=0.25), (1.0, 0.25)),
    ],
)
def test_action_control_round_trip(control, action):
    np.testing.assert_allclose(control_to_action(control), action, atol=1e-7)
    back = action_to_control(control_to_action(control))
    assert (back.steer, back.throttle, back.brake) == pytest.approx((control.steer, control.throttle, control.brake))


def test_controls_to_actions_stacks_one_row_per_control():
    actions = controls_to_actions([Control(steer=0.5, throttle=1.0), Control(brake=0.5)])
    np.testing.assert_allclose(actions, [[0.5, 1.0], [0.0, -0.5]])
    assert controls_to_actions([]).shape == (0, 2)


class ScriptedSim:
    """Frames with the given events, one per tick; `None` in the script raises a SimulatorError."""

    fixed_delta_seconds = 0.1

    def __init__(self, events: list[list[Event] | None]) -> None:
        self.events, self.tick = events, 0

    def reset(self, seed, options=None):
        self.tick = 0
        return make_frame(0)

    def step(self, control):
        events = self.events[self.tick]
        self.tick += 1
        if events is None:
            raise SimulatorError("lost the server")
        return dataclasses.replace(make_frame(self.tick), events=events)


@pytest.mark.parametrize("terminate, ending", [(False, None), (True, "red_light")])
def test_running_a_red_light_ends_the_episode_only_when_asked(terminate, ending):
    task = DrivingTask(
        ScriptedSim([[Event(EventKind.RED_LIGHT)]]), RewardConfig(), max_route_offset=1e9, terminate_red_light=terminate
    )
    task.reset(seed=0)
    result = task.step(np.zeros(2, np.float32))
    assert result.terminated is terminate and result.info["termination"] == ending
    assert result.info["infractions"]["red_light"] == 1  # counted (and penalised) either way
    assert result.info["reward_terms"]["red_light"] == -RewardConfig().red_light


def test_task_info_carries_plain_strings():
    hit = Event(EventKind.COLLISION, other_class=CLASS_IDS["Vehicles"])
    task = DrivingTask(ScriptedSim([[Event(EventKind.RED_LIGHT)], [hit], None]), RewardConfig(), max_route_offset=1e9)
    task.reset(seed=0)
    first = task.step(np.zeros(2, np.float32))
    assert not first.terminated and first.info["termination"] is None
    second = task.step(np.zeros(2, np.float32))
    assert second.terminated and type(second.info["termination"]) is str and second.info["termination"] == "collision"
    infractions = second.info["infractions"]
    assert all(type(k) is str for k in infractions)
    assert infractions == {
        "collision_pedestrian": 0,
        "collision_vehicle": 1,
        "collision_static": 0,
        "red_light": 1,
        "lane_invasion": 0,
        "off_road": 0,
    }
    task.reset(seed=0)
    task.step(np.zeros(2, np.float32))
    task.step(np.zeros(2, np.float32))
    fault = task.step(np.zeros(2, np.float32))
    assert fault.truncated and type(fault.info["truncation"]) is str and fault.info["truncation"] == "simulator_fault"
