"""The `render_mode="rgb_array"` picture: camera, segmentation overlay, depth, a top-down route view and text."""

from __future__ import annotations

import cv2
import numpy as np

from perception.conventions import colorize

from ..sim.contract import Frame
from .observation import normalise_depth

PIXELS_PER_METRE = 2.0


def _depth_image(depth_m: np.ndarray) -> np.ndarray:
    return cv2.applyColorMap(255 - normalise_depth(depth_m), cv2.COLORMAP_MAGMA)[:, :, ::-1]


def _top_down(frame: Frame, trail: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Ego-centred map, ego facing up: the route ahead (green) and the path driven (grey)."""
    h, w = size
    canvas = np.full((h, w, 3), 30, np.uint8)
    world_to_ego = np.linalg.inv(frame.transform)

    def to_px(xy_ego: np.ndarray) -> np.ndarray:  # ego x forward -> up, y right -> right
        return np.stack(
            [w / 2 + xy_ego[:, 1] * PIXELS_PER_METRE, h * 0.75 - xy_ego[:, 0] * PIXELS_PER_METRE], 1
        ).astype(np.int32)

    if len(trail) > 1:
        pts = np.c_[np.array(trail)[:, :3], np.ones(len(trail))] @ world_to_ego.T
        cv2.polylines(canvas, [to_px(pts[:, :2])], False, (150, 150, 150), 1, cv2.LINE_AA)
    route = np.vstack([[0.0, 0.0], frame.route.waypoints])
    cv2.polylines(canvas, [to_px(route)], False, (60, 220, 60), 2, cv2.LINE_AA)
    cx, cy = int(w / 2), int(h * 0.75)
    cv2.rectangle(canvas, (cx - 2, cy - 4), (cx + 2, cy + 4), (240, 240, 240), -1)
    return canvas


def _text_panel(lines: list[str], size: tuple[int, int]) -> np.ndarray:
    h, w = size
    panel = np.full((h, w, 3), 15, np.uint8)
    scale = max(0.3, h / 360)
    step = int(22 * scale) + 4
    for i, line in enumerate(lines[: max(1, (h - 4) // step)]):
        cv2.putText(panel, line, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1, cv2.LINE_AA)
    return panel


def dashboard(
    frame: Frame, labels: np.ndarray, depth_m: np.ndarray, trail: list[np.ndarray], lines: list[str]
) -> np.ndarray:
    """A (2H, 3W, 3) uint8 picture for a camera of H x W: camera | segmentation overlay | depth over top-down | text."""
    h, w = frame.size
    if labels.shape != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    if depth_m.shape != (h, w):
        depth_m = cv2.resize(depth_m, (w, h), interpolation=cv2.INTER_NEAREST)
    overlay = (0.45 * frame.rgb + 0.55 * colorize(labels)).astype(np.uint8)
    top = np.hstack([frame.rgb, overlay, _depth_image(depth_m)])
    bottom = np.hstack([_top_down(frame, trail, (h, w)), _text_panel(lines, (h, 2 * w))])
    return np.ascontiguousarray(np.vstack([top, bottom]))
