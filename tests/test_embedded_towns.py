"""The embedded town catalogue and options."""

from __future__ import annotations

import numpy as np
import pytest

from carla_gym.sim import backend_class, make_backend
from carla_gym.sim.embedded.ground import rail_line_y
from carla_gym.sim.embedded.network import build_network
from carla_gym.sim.embedded.towns import CATALOGUE, SPLITS, town_spec, training_seeds
from carla_gym.sim.embedded.world import build_world
from perception.conventions import CLASS_IDS


def test_splits_are_disjoint_and_large_enough():
    cls = backend_class("embedded")
    assert len(SPLITS["train"]) >= 6 and len(SPLITS["val"]) >= 1 and len(SPLITS["test"]) >= 1
    all_towns = [t for towns in SPLITS.values() for t in towns]
    assert len(all_towns) == len(set(all_towns)) == len(CATALOGUE)
    assert cls.split_of("harbour_district") == "test" and cls.towns("val") == SPLITS["val"]


def test_town_layouts_really_differ():
    shapes = set()
    for name in CATALOGUE:
        net = build_network(town_spec(name))
        degrees = tuple(sorted(np.bincount([len(r) for r in net.node_roads]).tolist()))
        shapes.add((len(net.nodes), len(net.roads), degrees))
        assert any(len(r) == 4 for r in net.node_roads) or any(len(r) == 3 for r in net.node_roads)
    assert len(shapes) == len(CATALOGUE)
    assert len({town_spec(n).layout for n in CATALOGUE}) >= 4
    # one and two lanes per direction both occur, and some roads are curved
    lanes = {r.lanes for n in CATALOGUE for r in build_network(town_spec(n)).roads}
    assert lanes == {1, 2}


def test_every_lane_continues():
    for name in CATALOGUE:
        net = build_network(town_spec(name))
        assert all(lane.successors for lane in net.lanes), name


def test_world_contains_most_classes():
    seen = set()
    for name in CATALOGUE:
        w = build_world(name)
        seen |= set(np.unique(w.vertices["rgba"][:, 3]).tolist()) | set(np.unique(w.ground.cls).tolist())
    expected = {
        "Building",
        "Fence",
        "Other",
        "Pole",
        "RoadLine",
        "Road",
        "Sidewalk",
        "Vegetation",
        "Wall",
        "TrafficSign",
        "Ground",
        "Bridge",
        "RailTrack",
        "GuardRail",
        "TrafficLight",
        "Static",
        "Dynamic",
        "Water",
    }
    assert {CLASS_IDS[c] for c in expected} <= seen


def test_int_seed_towns_and_unknown_options():
    spec = town_spec(12345)
    assert spec.name == "seed_12345" and town_spec(12345) == spec
    with pytest.raises(ValueError, match="unknown embedded town"):
        town_spec("Town01")
    with pytest.raises(TypeError, match="bogus"):
        make_backend("embedded", bogus=1)
    with pytest.raises(ValueError, match="weather"):
        make_backend("embedded", weather="monsoon", render=False)
    with make_backend("embedded", town=12345, render=False, vehicles=3, pedestrians=3) as b:
        f = b.reset(seed=0)
        assert f.route.length > 0 and b.town_name == "seed_12345"


def test_rail_line_runs_between_junction_rows_with_level_crossings():
    assert rail_line_y(np.array([0.0, 50.0, 150.0, 200.0])) == 100.0  # the widest gap
    assert rail_line_y(np.array([0.0, 80.0, 160.0, 240.0])) == 120.0  # ties: the gap nearest the centre
    world = build_world("industrial_park")
    row = world.ground.cls[int((world.ground.rail_y - world.ground.origin[1]) / 0.1)]
    assert world.ground.rail_y > world.network.nodes[:, 1].min()  # inside the town, not behind its edge
    crossings = np.flatnonzero(np.diff((row == CLASS_IDS["Road"]).astype(np.int8)) == 1)
    assert len(crossings) >= 3  # every north-south road crosses it
    assert (row == CLASS_IDS["RailTrack"]).mean() > 0.7


def test_training_seeds_keep_held_out_towns_unseen():
    seeds = training_seeds(12)
    assert len(set(seeds)) == 12 and training_seeds(12) == seeds
    held_out_palettes = {CATALOGUE[t].palette for s in ("val", "test") for t in SPLITS[s]}
    specs = [town_spec(s) for s in seeds]
    assert not {s.palette for s in specs} & held_out_palettes
    assert "ladder" not in {s.layout for s in specs}  # the test town's layout, not among the train towns'
    assert len({s.layout for s in specs}) >= 2
