import numpy as np
import pytest
import torch

from perception.conventions import invert_rigid, matrix_to_pose6, pose6_to_matrix, relative_pose


def random_poses(n, seed=0, max_pitch=np.pi / 2 - 1e-3):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.uniform(-100, 100, (n, 3)),
            rng.uniform(-np.pi, np.pi, (n, 1)),
            rng.uniform(-max_pitch, max_pitch, (n, 1)),
            rng.uniform(-np.pi, np.pi, (n, 1)),
        ],
        axis=1,
    )


def wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def test_pose6_round_trip_random():
    poses = random_poses(500)
    back = matrix_to_pose6(pose6_to_matrix(poses))
    assert np.allclose(back[:, :3], poses[:, :3], atol=1e-9)
    assert np.allclose(wrap(back[:, 3:] - poses[:, 3:]), 0.0, atol=1e-9)


@pytest.mark.parametrize("angle", [np.pi - 1e-7, -np.pi + 1e-7, np.pi, 3.0, -3.0])
def test_round_trip_with_angles_near_pi(angle):
    pose = np.array([1.0, -2.0, 3.0, angle, 0.3, angle])
    back = matrix_to_pose6(pose6_to_matrix(pose))
    assert np.allclose(wrap(back[3:] - pose[3:]), 0.0, atol=1e-6)
    assert np.allclose(pose6_to_matrix(back), pose6_to_matrix(pose), atol=1e-12)


def test_matrix_is_rigid_and_yaw_turns_x_toward_y():
    m = pose6_to_matrix(np.array([0, 0, 0, 0, 0, np.pi / 2]))
    assert np.allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0])
    R = pose6_to_matrix(random_poses(20))[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)


def test_equals_carla_transform_get_matrix():
    carla = pytest.importorskip("carla")
    for x, y, z, roll, pitch, yaw in random_poses(200, seed=1):
        t = carla.Transform(
            carla.Location(x=x, y=y, z=z),
            carla.Rotation(pitch=np.degrees(pitch), yaw=np.degrees(yaw), roll=np.degrees(roll)),
        )
        # carla stores float32: compare rotations to 1e-5 and translations relative to their size
        ours = pose6_to_matrix(np.array([x, y, z, roll, pitch, yaw]))
        theirs = np.array(t.get_matrix())
        assert np.allclose(ours[:3, :3], theirs[:3, :3], atol=1e-5)
        assert np.allclose(ours[:3, 3], theirs[:3, 3], rtol=1e-6, atol=1e-5)


def test_relative_pose_of_forward_motion_by_hand():
    # Camera yawed 90 deg (looking along world +y), then moving 2 m along world +y: in its own
    # previous frame that is 2 m forward (+x).
    m_prev = pose6_to_matrix(np.array([5.0, 1.0, 1.4, 0, 0, np.pi / 2]))
    m_cur = pose6_to_matrix(np.array([5.0, 3.0, 1.4, 0, 0, np.pi / 2]))
    rel = relative_pose(m_prev, m_cur)
    assert np.allclose(rel, [[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-12)
    assert np.allclose(m_prev @ rel, m_cur)
    assert np.allclose(invert_rigid(m_prev) @ m_prev, np.eye(4), atol=1e-12)


def test_torch_path_is_batched_and_differentiable():
    pose = torch.tensor(random_poses(4), requires_grad=True)
    m = pose6_to_matrix(pose)
    assert isinstance(m, torch.Tensor) and m.shape == (4, 4, 4)
    matrix_to_pose6(m).sum().backward()
    assert torch.isfinite(pose.grad).all()
    assert np.allclose(m.detach().numpy(), pose6_to_matrix(random_poses(4)))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="6 numbers"):
        pose6_to_matrix(np.zeros(5))
    with pytest.raises(ValueError, match="4, 4"):
        matrix_to_pose6(np.zeros((3, 3)))
