"""The embedded world's driving: vehicle model, autopilot, events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_gym.sim import Control, EventKind, make_backend
from carla_gym.sim.embedded.lights import GREEN, RED
from carla_gym.sim.embedded.vehicles import RouteLanes
from perception.conventions import CLASS_IDS


def test_bicycle_model_responds_to_control():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        b.reset(seed=1)
        x0 = b.ego.matrix()
        for _ in range(20):
            f = b.step(Control(throttle=1.0))
        assert 4.0 < f.speed < 8.0  # ~3.4 m/s^2 for 2 s
        moved = np.linalg.inv(x0) @ f.transform
        assert moved[0, 3] > 5.0 and abs(moved[1, 3]) < 0.05  # straight ahead
        yaw0 = b.ego.yaw
        for _ in range(5):
            f = b.step(Control(steer=0.5, throttle=0.3))
        turned = (b.ego.yaw - yaw0 + math.pi) % (2 * math.pi) - math.pi
        assert turned > 0.1  # positive steer turns right: yaw grows (from +x towards +y)
        for _ in range(30):
            f = b.step(Control(brake=1.0))
        assert f.speed == 0.0


def _facing_building(backend) -> tuple[float, float, float]:
    """An ego pose 8 m in front of a building's road-side face, looking at it."""
    obs = backend.world.scenery.obstacles
    ground = backend.world.ground
    for i in np.flatnonzero(obs.classes == CLASS_IDS["Building"]):
        cx, cy, hl, hw, yaw = obs.boxes[i]
        for sign in (1.0, -1.0):
            n = sign * np.array([-math.sin(yaw), math.cos(yaw)])
            start = np.array([cx, cy]) + n * (hw + 8.0)
            if int(ground.class_at(start)) in (CLASS_IDS["Sidewalk"], CLASS_IDS["Road"]):
                return float(start[0]), float(start[1]), math.atan2(-n[1], -n[0])
    raise AssertionError("no building faces a street")


@pytest.mark.parametrize("pose", [(1.0, 2.0), "north", (0.0, float("nan"), 0.0), None])
def test_a_bad_ego_pose_is_refused_by_name(pose):
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        with pytest.raises(ValueError, match="reset option ego_pose"):
            b.reset(seed=2, options={"ego_pose": pose})


def test_driving_into_a_wall_reports_a_static_collision():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        b.reset(seed=2)
        pose = _facing_building(b)
        b.reset(seed=2, options={"ego_pose": pose})
        collisions = []
        for _ in range(60):
            f = b.step(Control(throttle=0.7))
            collisions += [e for e in f.events if e.kind is EventKind.COLLISION]
            if collisions:
                break
        assert collisions, "the ego drove through the building"
        hit = collisions[0]
        assert hit.category == "static"
        assert hit.other_class in (
            CLASS_IDS[c]
            for c in ("Building", "Vegetation", "Pole", "Static", "Dynamic", "Other", "Fence", "Wall", "TrafficSign")
        )
        assert hit.intensity > 0 and f.speed == 0.0
        travelled = math.hypot(b.ego.x - pose[0], b.ego.y - pose[1])
        assert travelled < 8.0  # stopped before the building's face


@pytest.mark.parametrize("town,seed", [("grid_suburb", 3), ("ring_boulevard", 1)])
def test_autopilot_completes_a_short_route_without_events(town, seed):
    with make_backend("embedded", town=town, render=False, vehicles=8, pedestrians=10, route_length=120.0) as b:
        f = b.reset(seed=seed)
        events = []
        for _ in range(1200):
            f = b.step(b.autopilot_control())
            events += f.events
            if f.route.distance_left < 3.0:
                break
        assert f.route.distance_left < 3.0, f"route not completed: {f.route.distance_left:.1f} m left"
        assert f.speed > 3.0  # it drives through the route's end (where the env ends the episode), not to a stop
        assert f.route.length >= 120.0
        assert not events, [str(e) for e in events]
        for _ in range(60):
            f = b.step(b.autopilot_control())
        assert f.speed == 0.0 and f.route.distance_left == 0.0  # past the end it brakes to a stop


def test_swerving_across_the_centre_line_is_a_lane_invasion_then_off_road():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        b.reset(seed=4)
        for _ in range(15):
            b.step(Control(throttle=0.8))
        kinds = []
        for _ in range(40):
            f = b.step(Control(steer=-0.25, throttle=0.3))
            kinds += [(e.kind, e.detail) for e in f.events]
        invasions = [d for k, d in kinds if k is EventKind.LANE_INVASION]
        assert invasions and invasions[0] in ("dashed", "solid")
        first_invasion = next(i for i, (k, _) in enumerate(kinds) if k is EventKind.LANE_INVASION)
        offroad = [i for i, (k, _) in enumerate(kinds) if k is EventKind.OFF_ROAD]
        assert not offroad or offroad[0] > first_invasion


def test_running_a_red_light_is_reported():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=0, pedestrians=0) as b:
        b.reset(seed=5)
        lights = b.lights
        sl = lights.stop_lines
        lane = np.array([int(sl["lane"][0])])
        red_t = next(t for t in np.arange(0, 200, 0.5) if lights.lane_state(lane, t)[0] == RED)
        green_t = next(t for t in np.arange(0, 200, 0.5) if lights.lane_state(lane, t)[0] == GREEN)
        mid, d = (sl["a"][0] + sl["b"][0]) / 2, sl["d"][0]
        assert any(e.kind is EventKind.RED_LIGHT for e in b.events.move_events(mid - d, mid + d, red_t))
        # not when green, nor when crossing the line backwards
        assert not any(e.kind is EventKind.RED_LIGHT for e in b.events.move_events(mid - d, mid + d, green_t))
        assert not any(e.kind is EventKind.RED_LIGHT for e in b.events.move_events(mid + d, mid - d, red_t))


def test_autopilot_stops_at_red_lights_and_npcs_keep_moving():
    with make_backend("embedded", town="offset_downtown", render=False, route_length=400.0) as b:
        f = b.reset(seed=11)
        start = b.traffic.s.copy(), b.traffic.lane.copy()
        events, stopped_at_light = [], 0
        for _ in range(600):
            f = b.step(b.autopilot_control())
            events += f.events
            if f.speed < 0.1 and len(b.stops.s):
                ahead = b.stops.s - b.tracker.progress
                near = (ahead > 0) & (ahead < 8)
                if near.any() and (b.lights.lane_state(b.stops.lane[near], b.time) != GREEN).any():
                    stopped_at_light += 1
                    assert f.hazards.red_light < 6.0  # the frame reports the stop line ahead
        assert not [e for e in events if e.kind in (EventKind.RED_LIGHT, EventKind.COLLISION)], [str(e) for e in events]
        moved = (b.traffic.lane != start[1]) | (np.abs(b.traffic.s - start[0]) > 20)
        assert moved.mean() > 0.6  # traffic flows
        assert f.route.completion > 0.3
        assert stopped_at_light > 0


def test_traffic_turns_and_pedestrians_cross():
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=20, pedestrians=40) as b:
        b.reset(seed=6)
        lanes = b.world.network.lanes
        turns, crossing = set(), 0
        for _ in range(300):
            b.step(Control(brake=1.0))
            for lane in b.traffic.lane:
                if lanes[lane].road < 0:  # a junction connector: which way does it turn?
                    p = lanes[lane].points
                    a, c = p[1] - p[0], p[-1] - p[-2]
                    cross = a[0] * c[1] - a[1] * c[0]
                    turns.add("right" if cross > 0.5 else "left" if cross < -0.5 else "straight")
            crossing += int(b.crowd.on_road_crossing().sum())
        assert turns == {"left", "right", "straight"}
        assert crossing > 0
        # pedestrians stay on sidewalks unless crossing
        from carla_gym.sim.embedded.ground import SIDEWALK

        on_side = ~b.crowd.on_road_crossing()
        assert (b.world.ground.class_at(b.crowd.xy[on_side]) == SIDEWALK).mean() > 0.95


@pytest.mark.parametrize(
    ("lead", "red", "late_brake", "expected"),
    [
        # 10 m/s: a full brake (8 m/s^2) stops in 6.25 m, so with a 1 m margin it brakes fully at <= 7.25 m
        (7.0, math.inf, 1.0, "full brake"),
        (7.5, math.inf, 1.0, "keeps speed"),
        (20.0, math.inf, 1.0, "keeps speed"),
        (20.0, math.inf, None, "brakes"),  # IDM distance keeping
        (20.0, 20.0, 1.0, "brakes"),  # a red light as near as the lead is kept as before
        (math.inf, math.inf, 1.0, "keeps speed"),
    ],
)
def test_late_braking_autopilot_closes_in_on_road_users(lead, red, late_brake, expected):
    from carla_gym.sim.embedded.autopilot import Autopilot, Ego
    from carla_gym.sim.route import RouteTracker

    tracker = RouteTracker(np.array([[0.0, 0.0], [200.0, 0.0]]))
    ego = Ego(0.0, 0.0, 0.0, speed=10.0)
    tracker.update(ego.matrix())
    control = Autopilot(speed_limit=10.0).control(ego, tracker, (lead, 0.0, red), late_brake)
    assert control.steer == pytest.approx(0.0, abs=1e-6)
    if expected == "full brake":
        assert (control.throttle, control.brake) == (0.0, 1.0)
    elif expected == "keeps speed":
        assert control.brake == 0.0 and control.throttle > 0.0
    else:
        assert 0.0 < control.brake < 1.0 and control.throttle == 0.0


def test_late_braking_autopilot_gets_closer_to_vehicles_without_colliding():
    """Over the same drive, the late-braking autopilot (approach recordings) comes nearer the vehicles ahead."""
    nearest = {}
    for late_brake in (None, 1.0):
        with make_backend("embedded", town="ring_boulevard", render=False) as b:
            b.reset(seed=0)
            gaps, collisions = [], 0
            for _ in range(600):
                f = b.step(b.autopilot_control(late_brake))
                gaps.append(f.hazards.lead)
                collisions += sum(e.kind == EventKind.COLLISION for e in f.events)
        assert collisions == 0
        nearest[late_brake] = min(gaps)
    assert nearest[None] < 5.0  # the drive meets traffic: IDM keeps its minimum gap (2.5 m) or so
    assert nearest[1.0] < nearest[None] - 1.0


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        (10.0, (4, 15.0, (7, 9))),  # within the first lane, which the route enters 5 m in
        (15.0, (4, 20.0, (7, 9))),  # the first lane's end
        (20.0, (7, 5.0, (9,))),
        (100.0, (9, 30.0, ())),  # past the route's end: its last point
    ],
)
def test_route_lanes_locate_a_distance_along_the_route(distance, expected):
    route = RouteLanes(lanes=(4, 7, 9), start=5.0, lengths=(20.0, 10.0, 30.0))
    assert route.at(distance) == expected


def test_lead_option_places_a_vehicle_on_the_route_ahead_and_leaves_the_rest_of_the_world():
    with make_backend("embedded", town="ring_boulevard", render=False) as b:
        b.reset(seed=3)
        traffic, crowd = b.traffic.xy.copy(), b.crowd.xy.copy()
        frame = b.reset(seed=3, options={"lead_m": 25.0})
        ahead = b.tracker.point_at(np.array([25.0]))[0]
        assert np.linalg.norm(b.traffic.xy[0] - ahead) < 0.5  # on the route, 25 m along it
        assert 15.0 < frame.hazards.lead < 25.0  # the gap from bumper to bumper
        assert np.array_equal(b.traffic.xy[1:], traffic[1:]) and np.array_equal(b.crowd.xy, crowd)


@pytest.mark.parametrize("option", ["lead_m", "crossing_m"])
@pytest.mark.parametrize("bad", [0.0, 1e6, "far", [25.0]])
def test_a_distance_along_the_route_outside_it_is_refused_by_name(option, bad):
    with make_backend("embedded", town="grid_suburb", render=False, vehicles=1, pedestrians=1) as b:
        with pytest.raises(ValueError, match=f"reset option {option}"):
            b.reset(seed=3, options={option: bad})


def test_crossing_option_sends_a_pedestrian_across_the_route_ahead_and_leaves_the_rest_of_the_world():
    from carla_gym.sim.embedded.ground import SIDEWALK

    with make_backend("embedded", town="grid_suburb", render=False) as b:
        b.reset(seed=1)
        traffic, crowd = b.traffic.xy.copy(), b.crowd.xy.copy()
        b.reset(seed=1, options={"crossing_m": 25.0})
        ahead = b.tracker.point_at(np.array([25.0]))[0]
        start = b.crowd.xy[0].copy()
        assert np.linalg.norm(start - ahead) < 8.0  # on the kerb beside the route, 25 m along it
        assert b.world.ground.class_at(start[None])[0] == SIDEWALK and b.crowd.on_road_crossing()[0]
        assert np.array_equal(b.traffic.xy, traffic) and np.array_equal(b.crowd.xy[1:], crowd[1:])
        for _ in range(400):  # the ego stands; the pedestrian crosses, then walks on along the far sidewalk
            b.step(Control(brake=1.0))
            if not b.crowd.on_road_crossing()[0]:
                break
        else:
            raise AssertionError("the pedestrian never reached the far sidewalk")
        end = b.crowd.xy[0]
        assert b.world.ground.class_at(end[None])[0] == SIDEWALK
        along = np.diff(b.tracker.point_at(np.array([24.0, 26.0])), axis=0)[0]
        side = [np.sign(along[0] * (p[1] - ahead[1]) - along[1] * (p[0] - ahead[0])) for p in (start, end)]
        assert side[0] == -side[1] != 0  # the far side of the road, not back


def test_a_placed_vehicle_keeps_to_the_given_lanes_then_to_each_lanes_first_successor():
    with make_backend("embedded", town="ring_boulevard", render=False) as b:
        b.reset(seed=3)
        traffic, table = b.traffic, b.table
        lane = int(traffic.lane[1])
        first = int(table.successors[lane][0])
        traffic.place(0, lane, 5.0, following=(first,))
        assert (traffic.lane[0], traffic.s[0], traffic.n1[0]) == (lane, 5.0, first)
        assert traffic.n2[0] == table.successors[first][0]  # past the given lanes: no draw from the generator
        assert np.allclose(traffic.xy[0], table.pose(np.array([lane]), np.array([5.0]))[0][0])
