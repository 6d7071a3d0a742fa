"""CARLA's 24-bit depth encoding.

A CARLA depth camera stores planar depth (distance along the optical axis) in three 8-bit
channels: `depth_m = (R + G*256 + B*65536) / (256**3 - 1) * 1000`. One code step is about
0.06 mm; the far plane is 1000 m.
"""

from __future__ import annotations

import numpy as np

FAR_PLANE_M = 1000.0
_MAX_CODE = 256**3 - 1


def decode_carla_depth(rgb: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Decode an (..., 3) uint8 image in RGB channel order into metres.

    The arithmetic is done in float64, so `encode_carla_depth(decode_carla_depth(x, np.float64))`
    returns `x` exactly. float32 (the default) is exact to well under one code step below 256 m.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"CARLA depth images are (..., 3) uint8 in RGB order, got {rgb.dtype} {rgb.shape}")
    code = rgb[..., 0].astype(np.float64) + rgb[..., 1] * 256.0 + rgb[..., 2] * 65536.0
    return (code * (FAR_PLANE_M / _MAX_CODE)).astype(dtype)


def decode_carla_depth_bgra(bgra: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Decode a CARLA depth camera's raw (H, W, 4) BGRA image into metres."""
    bgra = np.asarray(bgra)
    return decode_carla_depth(bgra[..., 2::-1], dtype)


def encode_carla_depth(depth_m: np.ndarray) -> np.ndarray:
    """Encode depth in metres into CARLA's (..., 3) uint8 RGB layout, rounding to the nearest code.

    Depths beyond the 1000 m far plane (sky) are stored as the far plane; negative or NaN depths
    are an error.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if np.isnan(depth).any() or (depth < 0).any():
        raise ValueError("depth must be non-negative metres without NaN")
    code = np.rint(np.minimum(depth, FAR_PLANE_M) * (_MAX_CODE / FAR_PLANE_M)).astype(np.uint32)
    out = np.empty(depth.shape + (3,), dtype=np.uint8)
    out[..., 0] = code & 0xFF
    out[..., 1] = (code >> 8) & 0xFF
    out[..., 2] = (code >> 16) & 0xFF
    return out
