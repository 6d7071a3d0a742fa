import numpy as np

from perception.conventions import intrinsics, pose6_to_matrix, relative_pose, warp_labels


def test_identity_pose_returns_same_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 22, (6, 10), dtype=np.uint8)
    depth = rng.uniform(1, 50, (6, 10)).astype(np.float32)
    warped, valid = warp_labels(labels, depth, np.eye(4), intrinsics(10, 6), depth_prev=depth, ignore_classes=())
    assert valid.all()
    assert np.array_equal(warped, labels)


def test_forward_translation_moves_point_to_hand_computed_pixel():
    # 64x64 camera, fov 90: f = 32, principal point (32, 32). A wall 11 m ahead of camera t-1;
    # the camera moves 1 m forward, so the wall is 10 m ahead of camera t.
    # Column j of frame t (centre u = j + 0.5) lands at u' = 32 + (u - 32) * 10 / 11 in frame t-1.
    # The labelled pixel of frame t-1 is (row 48, col 48): [48, 49) in u' means u in [49.6, 50.7),
    # so only column 50 (centre 50.5 -> u' = 48.82) and, by symmetry, row 50 receive it.
    K = intrinsics(64, 64, 90.0)
    m_prev = pose6_to_matrix(np.array([0.0, 0, 0, 0, 0, 0]))
    m_cur = pose6_to_matrix(np.array([1.0, 0, 0, 0, 0, 0]))
    labels_prev = np.zeros((64, 64), np.uint8)
    labels_prev[48, 48] = 5
    warped, valid = warp_labels(
        labels_prev, np.full((64, 64), 10.0), relative_pose(m_prev, m_cur), K, depth_prev=np.full((64, 64), 11.0)
    )
    assert valid.all()  # moving forward, every pixel of t was visible at t-1
    assert list(zip(*np.nonzero(warped == 5), strict=False)) == [(50, 50)]


def test_pixels_leaving_the_view_or_occluded_are_invalid():
    K = intrinsics(64, 64, 90.0)
    backward = relative_pose(np.eye(4), pose6_to_matrix(np.array([-1.0, 0, 0, 0, 0, 0])))
    _, valid = warp_labels(np.zeros((64, 64), np.uint8), np.full((64, 64), 10.0), backward, K)
    assert valid[32, 32] and not valid[0, 0] and not valid[63, 63]  # the border came into view
    # the depth check: frame t-1 saw something 3 m away where the moved point is at 11 m
    forward = relative_pose(np.eye(4), pose6_to_matrix(np.array([1.0, 0, 0, 0, 0, 0])))
    _, valid = warp_labels(
        np.zeros((64, 64), np.uint8), np.full((64, 64), 10.0), forward, K, depth_prev=np.full((64, 64), 3.0)
    )
    assert not valid.any()


def test_moving_classes_are_masked():
    labels = np.full((4, 4), 10, np.uint8)  # vehicles
    labels[0, 0] = 7
    _, valid = warp_labels(labels, np.full((4, 4), 5.0), np.eye(4), intrinsics(4, 4))
    assert valid.sum() == 1 and valid[0, 0]
