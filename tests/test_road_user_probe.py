"""benchmarks/road_user_probe.py: the two edits of an observation it asks a policy about, on a tiny hand-made case."""

from __future__ import annotations

import numpy as np
from benchmark_scripts import load_benchmark

road_user_probe = load_benchmark("road_user_probe")


def test_edits_erase_the_pedestrian_or_paint_it_into_the_vehicle_channel_and_leave_the_observation_alone():
    vehicle, pedestrian = road_user_probe.VEHICLE, road_user_probe.PEDESTRIAN
    semantic = np.zeros((6, 1, 3), np.uint8)
    semantic[vehicle] = [[200, 10, 0]]
    semantic[pedestrian] = [[0, 90, 255]]
    semantic[0] = [[7, 7, 7]]  # road
    obs = {"semantic": semantic, "state": np.ones(7, np.float32)}
    edited = road_user_probe.edits(obs)
    np.testing.assert_array_equal(edited["as_is"]["semantic"], semantic)
    np.testing.assert_array_equal(edited["pedestrian_erased"]["semantic"][pedestrian], [[0, 0, 0]])
    np.testing.assert_array_equal(edited["pedestrian_erased"]["semantic"][vehicle], [[200, 10, 0]])
    np.testing.assert_array_equal(edited["pedestrian_as_vehicle"]["semantic"][vehicle], [[200, 90, 255]])
    np.testing.assert_array_equal(edited["pedestrian_as_vehicle"]["semantic"][pedestrian], [[0, 0, 0]])
    for version in edited.values():
        np.testing.assert_array_equal(version["semantic"][0], [[7, 7, 7]])
        assert version["state"] is obs["state"]
    np.testing.assert_array_equal(obs["semantic"][pedestrian], [[0, 90, 255]])  # the original is not touched
