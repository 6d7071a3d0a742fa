"""Polyline maths, road-side placement and turn classification of the embedded towns, on tiny hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from carla_gym.sim.embedded import network, towns
from carla_gym.sim.embedded.polylines import (
    bezier,
    normals,
    offset,
    polyline_lengths,
    resample,
    trim,
)
from carla_gym.sim.embedded.scenery import _Kerbside

BENT = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 10.0]])
STRAIGHT = np.array([[0.0, 0.0], [4.0, 0.0], [10.0, 0.0]])


def test_polyline_lengths():
    np.testing.assert_allclose(polyline_lengths(BENT), [0.0, 5.0, 11.0])


@pytest.mark.parametrize(
    ("s", "point"), [(-1.0, (0.0, 0.0)), (2.5, (1.5, 2.0)), (8.0, (3.0, 7.0)), (20.0, (3.0, 10.0))]
)
def test_resample_interpolates_and_clamps(s, point):
    np.testing.assert_allclose(resample(BENT, np.array([s]))[0], point)


def test_right_hand_normal_and_offset():
    # CARLA's ground frame is left-handed: heading +x, the right-hand side is +y.
    np.testing.assert_allclose(normals(STRAIGHT), [[0.0, 1.0]] * 3, atol=1e-12)
    np.testing.assert_allclose(offset(STRAIGHT, 2.0), STRAIGHT + [0.0, 2.0])


def test_bezier_ends_and_midpoint():
    p0, c, p2 = np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([4.0, 4.0])
    pts = bezier(p0, c, p2, 3)
    np.testing.assert_allclose(pts, [[0.0, 0.0], [3.0, 1.0], [4.0, 4.0]])  # 0.25 p0 + 0.5 c + 0.25 p2


def test_trim_keeps_inner_points():
    np.testing.assert_allclose(trim(STRAIGHT, 1.0, 2.0), [[1.0, 0.0], [4.0, 0.0], [8.0, 0.0]])


@pytest.mark.parametrize(("side", "y"), [(-1.0, -2.0), (1.0, 2.0)])
def test_kerbside_point_and_heading(side, y):
    kerb = _Kerbside(STRAIGHT, polyline_lengths(STRAIGHT), normals(STRAIGHT), side)
    p, yaw = kerb.at(5.0, 2.0)
    np.testing.assert_allclose(p, [5.0, y], atol=1e-12)
    assert yaw == 0.0 and kerb.length == 10.0


@pytest.mark.parametrize(
    ("d_out", "kind"), [((1.0, 0.1), "straight"), ((0.0, 1.0), "right"), ((0.0, -1.0), "left"), ((-1.0, 0.0), "left")]
)
def test_turn_kind(d_out, kind):
    # heading +x, a turn towards +y turns right (yaw grows); a U-turn counts as a left turn
    assert network._turn_kind(np.array([1.0, 0.0]), np.array(d_out)) == kind


def test_network_builder_builds_a_catalogue_town():
    net = network.build_network(towns.town_spec("grid_suburb"))
    assert isinstance(net, network.Network) and len(net.lanes) > len(net.roads)
