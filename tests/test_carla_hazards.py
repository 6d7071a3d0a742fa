"""`Frame.hazards` on the CARLA backend: the pure geometry by hand, and the backend through tests/fake_carla.py."""

import math

import numpy as np
import pytest
from fake_carla import (
    FakeServer,
    FakeTrafficLight,
    Location,
    TrafficLightState,
    make_fake_carla,
)

from carla_gym.sim import Control, SimulatorError
from carla_gym.sim.carla_backend import CarlaBackend, CarlaConfig
from carla_gym.sim.carla_backend.hazards import (
    corridor,
    in_ego_frame,
    lead_distance,
    red_light_distance,
)
from perception.conventions import pose6_to_matrix

CAR, WALKER = (2.4, 1.0), (0.25, 0.25)
# A right-hand 90 degree turn: 10 m straight on, then along +y (CARLA's ego frame has y to the right).
RIGHT_TURN = np.array(
    [[2.0, 0.0], [4.0, 0.0], [6.0, 0.0], [8.0, 0.0], [10.0, 0.0], [10.0, 2.0], [10.0, 4.0], [10.0, 6.0]]
)


def lead(boxes, path=None, ego=CAR):
    """lead_distance of (x, y, yaw_deg, half_length, half_width) boxes at the ego's level."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 5)
    centres = np.column_stack([boxes[:, :2], np.zeros(len(boxes))])
    return lead_distance(centres, np.radians(boxes[:, 2]), boxes[:, 3:], ego, path)


def test_lead_counts_actors_ahead_in_the_lane_corridor():
    assert lead([(12.0, 0.5, 0.0, *CAR)]) == pytest.approx(12.0 - 2.4 - 2.4)  # bumper to bumper
    assert lead([(12.0, 2.3, 0.0, *CAR)]) == pytest.approx(12.0 - 4.8)  # 2.3 <= ego 1.0 + margin 0.4 + its 1.0
    assert lead([(12.0, 2.5, 0.0, *CAR)]) == math.inf  # mostly in the next lane
    assert lead([(12.0, 3.5, 0.0, *CAR)]) == math.inf
    assert lead([(12.0, 1.6, 0.0, *WALKER)]) == pytest.approx(12.0 - 2.4 - 0.25)  # 1.6 <= 1.0 + 0.4 + 0.25
    assert lead([(12.0, 1.8, 0.0, *WALKER)]) == math.inf  # on the kerb
    assert lead([(-8.0, 0.0, 0.0, *CAR)]) == math.inf  # behind
    assert lead([(45.0, 0.0, 0.0, *CAR)]) == math.inf  # beyond 40 m
    assert lead([(9.0, -0.5, 0.0, *WALKER)]) == pytest.approx(9.0 - 2.4 - 0.25)
    assert lead([(12.0, 0.0, 90.0, *CAR)]) == pytest.approx(12.0 - 2.4 - 1.0)  # crossing: its width is along the lane
    assert lead([(20.0, 0.0, 0.0, *CAR), (9.0, -0.5, 0.0, *WALKER), (5.0, 3.0, 0.0, *CAR)]) == pytest.approx(6.35)
    assert lead([(3.0, 0.0, 0.0, *CAR)]) == 0.0  # overlapping: never negative
    assert lead([]) == math.inf
    assert lead([(12.0, 0.5, 0.0, *CAR)], ego=(0.0, 1.0)) == pytest.approx(9.6)


def test_lead_corridor_bends_along_the_route():
    path = RIGHT_TURN
    assert lead([(10.0, 8.0, 90.0, *CAR)], path) == pytest.approx(18.0 - 2.4 - 2.4)
    assert lead([(18.0, 0.0, 0.0, *CAR)], path) == math.inf  # straight on, off the route
    assert lead([(18.0, 0.0, 0.0, *CAR)]) == pytest.approx(18.0 - 4.8)  # no route: a straight corridor
    line = corridor(path)
    assert line[-1].tolist() == pytest.approx([10.0, 40.0 - 10.0])  # continued straight to 40 m
    assert corridor(np.array([[-2.0, 0.0], [0.0, 0.0]])).tolist() == [[0.0, 0.0], [40.0, 0.0]]


def test_lead_ignores_actors_on_another_level():
    centres = np.array([[12.0, 0.0, 6.0]])  # on an overpass
    assert lead_distance(centres, np.zeros(1), np.array([CAR]), CAR) == math.inf
    assert lead_distance(centres * [1, 1, 0], np.zeros(1), np.array([CAR]), CAR) == pytest.approx(7.2)


def test_in_ego_frame_uses_carla_matrices():
    ego = pose6_to_matrix(np.array([100.0, 50.0, 0.0, 0.0, 0.0, np.pi / 2]))  # yaw 90 degrees: forward is world +y
    other = pose6_to_matrix(np.array([99.0, 62.0, 0.0, 0.0, 0.0, np.pi]))
    centres, yaws = in_ego_frame(ego, other[None])
    assert centres[0].tolist() == pytest.approx([12.0, 1.0, 0.0])
    assert yaws[0] == pytest.approx(np.pi / 2)


def red(points, path=None, ego=CAR):
    """red_light_distance of (x, y, yaw_deg) stop waypoints at the ego's level."""
    points = np.array(points, dtype=np.float64).reshape(-1, 3)
    return red_light_distance(
        np.column_stack([points[:, :2], np.zeros(len(points))]), np.radians(points[:, 2]), ego, path
    )


def test_red_light_counts_stop_lines_ahead_in_the_lane_corridor():
    assert red([(12.0, 0.0, 0.0)]) == pytest.approx(12.0 - 2.4)  # from the front bumper
    assert red([(12.0, 1.3, 30.0)]) == pytest.approx(9.6)  # 1.3 <= ego 1.0 + margin 0.4; lane within 45 degrees
    assert red([(12.0, -3.5, 180.0)]) == math.inf  # the opposite lane, 3.5 m to the left
    assert red([(12.0, 3.5, 0.0)]) == math.inf  # the next lane the same way
    assert red([(12.0, 0.0, 90.0)]) == math.inf  # a crossing street's line, facing across
    assert red([(12.0, 0.0, 50.0)]) == math.inf
    assert red([(60.0, 0.0, 0.0)]) == math.inf  # beyond 50 m
    assert red([(50.0, 0.0, 0.0)]) == pytest.approx(47.6)
    assert red([(-6.0, 0.0, 0.0)]) == math.inf  # behind
    assert red([(2.5, 0.0, 0.0)]) == pytest.approx(0.1)
    assert red([(2.2, 0.0, 0.0)]) == 0.0  # the bumper is 0.2 m over the line: it still applies
    assert red([(1.4, 0.0, 0.0)]) == math.inf  # the bumper passed it by 1 m
    assert red([(30.0, 0.0, 0.0), (12.0, -3.5, 180.0), (20.0, 0.2, 0.0)]) == pytest.approx(17.6)
    assert red([(12.0, 0.0, 0.0)], ego=(0.0, 1.0)) == pytest.approx(12.0)
    assert red([]) == math.inf
    overpass = np.array([[12.0, 0.0, 6.0]])
    assert red_light_distance(overpass, np.zeros(1), CAR) == math.inf


def test_red_light_corridor_bends_along_the_route():
    assert red([(10.0, 8.0, 90.0)], RIGHT_TURN) == pytest.approx(18.0 - 2.4)  # around the corner, along the route
    assert red([(10.0, 8.0, 0.0)], RIGHT_TURN) == math.inf  # the crossing lane there
    assert red([(18.0, 0.0, 0.0)], RIGHT_TURN) == math.inf  # straight on, off the route
    left_turn = RIGHT_TURN * [1.0, -1.0]
    assert red([(10.0, -8.0, 270.0)], left_turn) == pytest.approx(15.6)  # yaws compare modulo 360 degrees


@pytest.fixture
def sim_and_ego():
    server = FakeServer()
    sim = CarlaBackend(
        CarlaConfig(size=(4, 32), vehicles=2, walkers=1, timeout=1.0),
        carla_module=make_fake_carla({server.address: server}),
    )
    sim.reset(seed=0)
    ego = next(a for a in server.actors.values() if a.attributes.get("role_name") == "hero")
    yield server, sim, ego
    sim.close()


def test_backend_red_light_looks_ahead_to_stop_waypoints_on_the_route(sim_and_ego):
    server, sim, ego = sim_and_ego
    x = ego.location.x
    assert sim.step(Control()).hazards.red_light == math.inf  # no lights
    ahead = FakeTrafficLight(TrafficLightState.Red, [(x + 30.0, 0.0), (x + 30.0, 3.5), (x + 20.0, -3.5, 180.0)], id=900)
    crossing = FakeTrafficLight(TrafficLightState.Red, [(x + 25.0, 0.0, 90.0)], id=901)
    server.traffic_lights = [ahead, crossing]
    assert not ego.is_at_traffic_light()  # far from any trigger volume
    assert sim.step(Control()).hazards.red_light == pytest.approx(30.0 - 2.4, abs=1e-4)
    ahead.state = TrafficLightState.Green
    assert sim.step(Control()).hazards.red_light == math.inf
    ahead.state = TrafficLightState.Yellow
    assert sim.step(Control()).hazards.red_light == pytest.approx(27.6, abs=1e-4)
    sim.reset(seed=0)
    sim.step(Control())
    assert ahead.stop_waypoint_calls == crossing.stop_waypoint_calls == 1  # static: asked once per light
    server.hang = True
    with pytest.raises(SimulatorError):
        sim.step(Control())
    server.hang = False
    sim.reset(seed=0)  # a new session, perhaps on another map: asked again
    assert ahead.stop_waypoint_calls == crossing.stop_waypoint_calls == 2


def test_backend_lead_gap_to_a_vehicle_or_walker_in_the_lane(sim_and_ego):
    server, sim, ego = sim_and_ego
    npcs = [a for a in server.actors.values() if a.type_id.startswith("vehicle.") and a is not ego]
    for npc in npcs:
        npc.location = Location(x=ego.location.x - 30.0, y=0.0, z=ego.location.z)  # behind
    assert sim.step(Control()).hazards.lead == math.inf
    npcs[0].location = Location(x=ego.location.x + 15.0, y=0.3, z=ego.location.z)
    npcs[1].location = Location(x=ego.location.x + 10.0, y=3.5, z=ego.location.z)  # next lane
    assert sim.step(Control()).hazards.lead == pytest.approx(15.0 - 2.4 - 2.4, abs=1e-4)
    walker = next(a for a in server.actors.values() if a.type_id.startswith("walker."))
    walker.location = Location(x=ego.location.x + 6.0, y=-0.5, z=ego.location.z)
    assert sim.step(Control()).hazards.lead == pytest.approx(6.0 - 2.4 - 0.25, abs=1e-4)
