import numpy as np
import pytest

from perception.conventions import back_project, back_project_depth_map, focal_length, intrinsics, project


def test_intrinsics_by_hand():
    K = intrinsics(800, 600, 90.0)
    assert np.allclose(K, [[400, 0, 400], [0, 400, 300], [0, 0, 1]])
    assert focal_length(512, 60.0) == pytest.approx(512 / (2 * np.tan(np.radians(30))))


def test_projection_swaps_unreal_axes():
    K = intrinsics(800, 600, 90.0)
    # 10 m ahead, 2 m right, 1 m up: u = 400 + 400 * 2/10, v = 300 - 400 * 1/10.
    uv, depth = project(np.array([10.0, 2.0, 1.0]), K)
    assert np.allclose(uv, [480.0, 260.0]) and depth == 10.0
    uv_behind, _ = project(np.array([-1.0, 0.0, 0.0]), K)
    assert np.isnan(uv_behind).all()


def test_back_project_inverts_project():
    K = intrinsics(64, 32, 75.0)
    points = np.random.default_rng(0).uniform([1, -5, -5], [50, 5, 5], (100, 3))
    uv, depth = project(points, K)
    assert np.allclose(back_project(uv, depth, K), points)


def test_depth_map_centre_pixels_back_project_near_optical_axis():
    K = intrinsics(4, 2, 90.0)
    pts = back_project_depth_map(np.full((2, 4), 8.0), K)
    assert pts.shape == (2, 4, 3)
    # pixel (row 0, col 2) has centre (2.5, 0.5): y = 0.5 * 8 / 2, z = +0.5 * 8 / 2
    assert np.allclose(pts[0, 2], [8.0, 2.0, 2.0])


def test_bad_camera_parameters_are_rejected():
    with pytest.raises(ValueError, match="fov"):
        intrinsics(10, 10, 180.0)
    with pytest.raises(ValueError, match="size"):
        intrinsics(0, 10)
