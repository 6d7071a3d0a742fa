"""Pinhole camera model in CARLA's conventions.

CARLA cameras look along their actor's +x axis, with +y to the right and +z up (Unreal's
left-handed frame). The image frame has u to the right, v down and depth w forward, so a point
(x, y, z) in the camera actor's frame projects as `(u, v, w) = K @ (y, -z, x)`. Pixel (row i,
column j) covers [j, j+1) x [i, i+1); its centre is at (u, v) = (j + 0.5, i + 0.5) and the
principal point is the image centre (W/2, H/2), as in CARLA's own examples.
"""

from __future__ import annotations

import math

import numpy as np


def focal_length(width: int, fov_deg: float) -> float:
    """Focal length in pixels of a camera `width` pixels wide with horizontal field of view `fov_deg`."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov must lie strictly between 0 and 180 degrees, got {fov_deg}")
    return width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def intrinsics(width: int, height: int, fov_deg: float = 90.0) -> np.ndarray:
    """The 3x3 intrinsic matrix K of a CARLA camera (square pixels, centred principal point)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = focal_length(width, fov_deg)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (..., 3) points in the camera actor's frame to pixel coordinates.

    Returns `(uv, depth)`: (..., 2) continuous pixel coordinates and the (...) planar depth (the x
    coordinate). Points at or behind the camera get NaN coordinates.
    """
    p = np.asarray(points_cam, dtype=np.float64)
    image_frame = np.stack([p[..., 1], -p[..., 2], p[..., 0]], axis=-1)
    uvw = image_frame @ np.asarray(K, dtype=np.float64).T
    w = uvw[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / np.where(w > 0, w, np.nan)[..., None]
    return uv, p[..., 0]


def back_project(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Lift pixel coordinates (..., 2) with planar depth (...) to (..., 3) points in the camera actor's frame."""
    uv = np.asarray(uv, dtype=np.float64)
    d = np.asarray(depth, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return np.stack([d, (uv[..., 0] - cx) * d / fx, -(uv[..., 1] - cy) * d / fy], axis=-1)


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H, W, 2) array of the (u, v) coordinates of every pixel centre."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([u, v], axis=-1)


def back_project_depth_map(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Lift a whole (H, W) planar depth map to (H, W, 3) points in the camera actor's frame."""
    h, w = np.shape(depth)
    return back_project(pixel_centres(h, w), depth, K)
