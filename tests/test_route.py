import numpy as np
import pytest

from carla_gym.sim.route import RouteTracker
from perception.conventions import pose6_to_matrix


def ego(x, y, yaw=0.0):
    return pose6_to_matrix(np.array([x, y, 0.0, 0.0, 0.0, yaw]))


def test_progress_distance_and_waypoints_in_ego_frame():
    route = RouteTracker(np.array([[0.0, 0.0], [100.0, 0.0]]), num_waypoints=3, spacing=2.0)
    r = route.update(ego(10.0, 0.5))
    assert r.length == 100.0 and r.distance_left == pytest.approx(90.0)
    assert np.allclose(r.waypoints, [[2.0, -0.5], [4.0, -0.5], [6.0, -0.5]])
    assert route.deviation == pytest.approx(0.5)
    # facing +y (yaw 90 deg), the route along +x lies to the ego's left (negative y)
    r = route.update(ego(20.0, 0.0, np.pi / 2))
    assert r.waypoints[0] == pytest.approx([0.0, -2.0], abs=1e-6)
    assert r.completion == pytest.approx(0.2)


def test_progress_never_jumps_to_a_nearby_later_part_of_a_loop():
    # out along y = 0, back along y = 3: standing at the start, the return leg is only 3 m away
    route = RouteTracker(np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 3.0], [0.0, 3.0]]))
    assert route.update(ego(1.0, 2.0)).distance_left == pytest.approx(103.0 - 1.0)
    # progress does not go backwards either
    assert route.update(ego(0.0, 0.0)).distance_left == pytest.approx(102.0)


def test_short_route_is_rejected():
    with pytest.raises(ValueError, match="at least 2 points"):
        RouteTracker(np.zeros((1, 2)))
