"""Poses as 6 numbers and as 4x4 matrices, in CARLA's conventions.

`pose6 = (x, y, z, roll, pitch, yaw)`: translation in metres and angles in radians. The matrix is
exactly `carla.Transform(carla.Location(x, y, z), carla.Rotation(pitch, yaw, roll)).get_matrix()`
(with the angles in degrees there): it maps points from the actor's frame to the parent frame.

Every function accepts NumPy arrays or PyTorch tensors with any leading batch shape, and returns
the same kind; the tensor path is differentiable, so a network can regress pose6 and be trained
through the matrix.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def _as_tensor(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), False


def _back(x: torch.Tensor, was_tensor: bool) -> Any:
    """`x` as the caller's input kind: the tensor itself, or a NumPy array (typed `Any` so each
    public function keeps its `ArrayLike` in -> same kind out signature)."""
    return x if was_tensor else x.numpy()


def pose6_to_matrix(pose6: ArrayLike) -> ArrayLike:
    """Convert (..., 6) poses `(x, y, z, roll, pitch, yaw)` to (..., 4, 4) matrices (CARLA's get_matrix)."""
    p, was_tensor = _as_tensor(pose6)
    if p.shape[-1] != 6:
        raise ValueError(f"a pose6 has 6 numbers (x, y, z, roll, pitch, yaw), got shape {tuple(p.shape)}")
    x, y, z, roll, pitch, yaw = p.unbind(-1)
    cr, sr = torch.cos(roll), torch.sin(roll)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows = [
        [cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr, x],
        [cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr, y],
        [sp, -cp * sr, cp * cr, z],
        [zero, zero, zero, one],
    ]
    m = torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
    return _back(m, was_tensor)


def matrix_to_pose6(matrix: ArrayLike) -> ArrayLike:
    """Convert (..., 4, 4) rigid transforms to (..., 6) poses; the exact inverse of `pose6_to_matrix`.

    Angles come from `atan2` on pairs of matrix entries (never `asin` of a clamped value), so they
    stay accurate and differentiable up to pitch = +-90 degrees, where roll and yaw are coupled.
    Roll and yaw are in (-pi, pi], pitch in [-pi/2, pi/2].
    """
    m, was_tensor = _as_tensor(matrix)
    if m.shape[-2:] != (4, 4):
        raise ValueError(f"expected (..., 4, 4) matrices, got shape {tuple(m.shape)}")
    r00, r10, r20 = m[..., 0, 0], m[..., 1, 0], m[..., 2, 0]
    pitch = torch.atan2(r20, torch.sqrt(r00 * r00 + r10 * r10))
    yaw = torch.atan2(r10, r00)
    roll = torch.atan2(-m[..., 2, 1], m[..., 2, 2])
    pose = torch.stack([m[..., 0, 3], m[..., 1, 3], m[..., 2, 3], roll, pitch, yaw], dim=-1)
    return _back(pose, was_tensor)


def invert_rigid(matrix: ArrayLike) -> ArrayLike:
    """Invert (..., 4, 4) rigid transforms using the rotation's transpose (exact and cheap)."""
    m, was_tensor = _as_tensor(matrix)
    rot_t = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return _back(out, was_tensor)


def relative_pose(m_prev: ArrayLike, m_cur: ArrayLike) -> ArrayLike:
    """Ego-motion target `T_rel = inv(M_prev) @ M_cur`: camera t expressed in camera t-1's frame.

    `T_rel` maps points from camera t's frame into camera t-1's frame; with camera-to-world
    matrices `M`, `M_prev @ T_rel == M_cur`.
    """
    prev, was_tensor = _as_tensor(m_prev)
    cur, _ = _as_tensor(m_cur)
    return _back(invert_rigid(prev) @ cur.to(prev.dtype), was_tensor)
