"""Warping a label map from frame t-1 into frame t, for the temporal-consistency metric."""

from __future__ import annotations

import numpy as np

from .camera import back_project_depth_map, project
from .classes import MOVING_CLASSES


def warp_to_current(
    values_prev: np.ndarray,
    depth_cur: np.ndarray,
    T_rel: np.ndarray,
    K: np.ndarray,
    depth_prev: np.ndarray | None = None,
    depth_tolerance: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a per-pixel map (labels, or anything indexable per pixel) from frame t-1 into frame t.

    Every pixel of frame t is back-projected with its depth `depth_cur`, moved into camera t-1's
    frame with `T_rel = inv(M_{t-1}) @ M_t` (see `relative_pose`), projected into frame t-1 and
    given the value of the pixel it lands in (nearest sampling). A pixel is valid when it lands
    inside frame t-1, in front of the camera, and, if `depth_prev` is given, when the depth it
    lands on agrees with the moved point's depth within `depth_tolerance` (relative), which
    rejects points that frame t-1 could not see (occlusion).

    Returns `(warped, valid)`: the warped map (invalid pixels hold the value of pixel (0, 0) and
    must be ignored) and the (H, W) boolean validity mask.
    """
    values_prev = np.asarray(values_prev)
    h, w = np.shape(depth_cur)
    if values_prev.shape[:2] != (h, w):
        raise ValueError(f"values_prev has shape {values_prev.shape[:2]} but depth_cur has {(h, w)}")
    points = back_project_depth_map(depth_cur, K)
    T = np.asarray(T_rel, dtype=np.float64)
    points_prev = points @ T[:3, :3].T + T[:3, 3]
    uv, z = project(points_prev, K)
    with np.errstate(invalid="ignore"):
        col = np.floor(uv[..., 0])
        row = np.floor(uv[..., 1])
        valid = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    col = np.where(valid, col, 0).astype(np.intp)
    row = np.where(valid, row, 0).astype(np.intp)
    if depth_prev is not None:
        seen = np.asarray(depth_prev)[row, col]
        valid &= np.abs(seen - z) <= depth_tolerance * np.maximum(z, 1e-6)
    return values_prev[row, col], valid


def warp_labels(
    labels_prev: np.ndarray,
    depth_cur: np.ndarray,
    T_rel: np.ndarray,
    K: np.ndarray,
    depth_prev: np.ndarray | None = None,
    depth_tolerance: float = 0.05,
    ignore_classes: tuple[int, ...] = MOVING_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a (H, W) label map from frame t-1 into frame t (see `warp_to_current`).

    Pixels whose warped label is one of `ignore_classes` (by default the classes that move on
    their own, whose motion the camera pose does not explain) are marked invalid too.
    """
    warped, valid = warp_to_current(labels_prev, depth_cur, T_rel, K, depth_prev, depth_tolerance)
    if ignore_classes:
        valid &= ~np.isin(warped, ignore_classes)
    return warped, valid
