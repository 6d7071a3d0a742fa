"""Ego-motion metrics: per-pair translation / rotation errors and ATE per clip.

Poses are camera-relative motions `T_rel = inv(M_{t-1}) @ M_t`, given as (..., 4, 4) matrices or
(..., 6) pose6 vectors (metres, radians). The translation error is `|t_pred - t_gt|` in metres;
the rotation error is the angle of `R_pred^T R_gt` in degrees, computed with `atan2` (exact near
zero, unlike `acos` of a clamped trace).
"""

from __future__ import annotations

import numpy as np
import torch

from perception.conventions import pose6_to_matrix


def as_matrices(poses: np.ndarray | torch.Tensor) -> np.ndarray:
    """(..., 4, 4) float64 matrices from matrices or (..., 6) pose6 vectors."""
    p = poses.detach().cpu().numpy() if isinstance(poses, torch.Tensor) else np.asarray(poses)
    p = p.astype(np.float64)
    if p.shape[-1] == 6:
        return pose6_to_matrix(p)
    if p.shape[-2:] != (4, 4):
        raise ValueError(f"expected (..., 4, 4) matrices or (..., 6) poses, got shape {p.shape}")
    return p


def rotation_angle(rotation: np.ndarray) -> np.ndarray:
    """Angle in radians of (..., 3, 3) rotations: atan2(|axis part|, trace - 1)."""
    r = np.asarray(rotation, dtype=np.float64)
    axis = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    return np.arctan2(np.linalg.norm(axis, axis=-1), np.trace(r, axis1=-2, axis2=-1) - 1.0)


def pose_errors(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair (translation error in metres, rotation error in degrees), each shaped like the batch."""
    p, g = as_matrices(pred), as_matrices(gt)
    trans = np.linalg.norm(p[..., :3, 3] - g[..., :3, 3], axis=-1)
    rot = np.degrees(rotation_angle(np.swapaxes(p[..., :3, :3], -1, -2) @ g[..., :3, :3]))
    return trans, rot


def compose_trajectory(relative: np.ndarray | torch.Tensor) -> np.ndarray:
    """Chain (T-1, 4, 4) relative motions into (T, 4, 4) camera poses starting at the identity."""
    rel = as_matrices(relative)
    poses = [np.eye(4)]
    for m in rel:
        poses.append(poses[-1] @ m)  # M_t = M_{t-1} @ T_rel
    return np.stack(poses)


def absolute_trajectory_error(
    pred_relative: np.ndarray | torch.Tensor, gt_relative: np.ndarray | torch.Tensor
) -> float:
    """ATE of one clip: RMSE in metres between the camera positions of the two chained trajectories.

    Both start at the same pose (the first frame), with no further alignment: the model predicts
    metric motion, so scale and drift are part of the error.
    """
    p, g = compose_trajectory(pred_relative), compose_trajectory(gt_relative)
    return float(np.sqrt(np.mean(np.sum((p[:, :3, 3] - g[:, :3, 3]) ** 2, axis=-1))))


class EgoMotionMetrics:
    """Streaming ego-motion errors: `update(pred, gt)` for frame pairs, `update_clip(...)` adds pairs and one ATE.

    `compute()` returns mean and median translation error (m) and rotation error (deg) over
    pairs, the mean ATE (m) over clips, and the counts.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._trans: list[np.ndarray] = []
        self._rot: list[np.ndarray] = []
        self._ate: list[float] = []

    def update(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> None:
        t, r = pose_errors(pred, gt)
        self._trans.append(np.ravel(t))
        self._rot.append(np.ravel(r))

    def update_clip(self, pred_relative: np.ndarray | torch.Tensor, gt_relative: np.ndarray | torch.Tensor) -> float:
        """Add one clip's (T-1) relative motions; returns its ATE."""
        self.update(pred_relative, gt_relative)
        ate = absolute_trajectory_error(pred_relative, gt_relative)
        self._ate.append(ate)
        return ate

    def compute(self) -> dict[str, float]:
        t = np.concatenate(self._trans) if self._trans else np.zeros(0)
        r = np.concatenate(self._rot) if self._rot else np.zeros(0)
        nan = float("nan")
        return {
            "translation_error_m": float(t.mean()) if t.size else nan,
            "translation_error_median_m": float(np.median(t)) if t.size else nan,
            "rotation_error_deg": float(r.mean()) if r.size else nan,
            "rotation_error_median_deg": float(np.median(r)) if r.size else nan,
            "ate_m": float(np.mean(self._ate)) if self._ate else nan,
            "pairs": int(t.size),
            "clips": len(self._ate),
        }
