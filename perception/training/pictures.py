"""Pictures of one test clip: per-frame vs temporal segmentation GIF, predicted vs true depth PNG, semantic PLY."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perception.conventions import back_project_depth_map, colorize
from perception.metrics.ego_motion import compose_trajectory

SKY_DEPTH_M = 200.0  # predicted points farther than this are left out of the point cloud


def segmentation_gif(
    rgb: np.ndarray, per_frame: np.ndarray, temporal: np.ndarray, path: Path, fps: float = 10.0
) -> Path:
    """Frames side by side: camera | per-frame baseline | temporal model; rgb (T, H, W, 3), labels (T, H, W)."""
    frames = [
        Image.fromarray(np.concatenate([rgb[t], colorize(per_frame[t]), colorize(temporal[t])], axis=1))
        for t in range(rgb.shape[0])
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path


def _depth_colour(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse-depth shading (near bright), (H, W) metres -> (H, W, 3) uint8, on a shared scale."""
    inv = (1.0 / np.clip(depth, lo, hi) - 1.0 / hi) / (1.0 / lo - 1.0 / hi)
    v = (255 * np.clip(inv, 0, 1) ** 0.5).astype(np.uint8)
    return np.stack([v, (v * 0.8).astype(np.uint8), 255 - v], axis=-1)


def depth_png(rgb: np.ndarray, pred: np.ndarray, true: np.ndarray, path: Path) -> Path:
    """Camera | predicted depth | true depth of one frame, on the same colour scale."""
    lo, hi = 1.0, 100.0
    Image.fromarray(np.concatenate([rgb, _depth_colour(pred, lo, hi), _depth_colour(true, lo, hi)], axis=1)).save(path)
    return path


def point_cloud_ply(
    labels: np.ndarray, depth: np.ndarray, pose6: np.ndarray, K: np.ndarray, path: Path, every: int = 4
) -> Path:
    """Semantic point cloud from predicted depth (T, H, W), placed with predicted relative poses (T-1, 6)
    composed from the first frame; coloured by predicted class; ASCII PLY."""
    poses = compose_trajectory(pose6) if len(pose6) else np.eye(4)[None]
    pts, cols = [], []
    for t in range(labels.shape[0]):
        cam = back_project_depth_map(depth[t], K)[::every, ::every].reshape(-1, 3)
        keep = np.isfinite(cam).all(1) & (depth[t][::every, ::every].reshape(-1) < SKY_DEPTH_M)
        cam = cam[keep]
        world = cam @ poses[t][:3, :3].T + poses[t][:3, 3]
        pts.append(world)
        cols.append(colorize(labels[t][::every, ::every]).reshape(-1, 3)[keep])
    p, c = np.concatenate(pts), np.concatenate(cols)
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {len(p)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "w") as f:
        f.write(header)
        f.writelines(f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(p, c, strict=False))
    return path


def write_pictures(
    item: dict[str, torch.Tensor], preds: dict[str, dict[str, torch.Tensor]], folder: str | Path
) -> list[Path]:
    """All three pictures for one clip's clean predictions (from `evaluation.evaluate`'s `on_clip`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = item["rgb"].permute(0, 2, 3, 1).numpy()
    pf, tm = preds["per_frame"], preds["temporal"]
    mid = rgb.shape[0] // 2
    return [
        segmentation_gif(
            rgb, pf["labels"].numpy(), tm["labels"].numpy(), folder / "segmentation_per_frame_vs_temporal.gif"
        ),
        depth_png(rgb[mid], tm["depth"][mid].numpy(), item["depth"][mid].numpy(), folder / "depth_pred_vs_true.png"),
        point_cloud_ply(
            tm["labels"].numpy(),
            tm["depth"].numpy(),
            tm["pose6"].numpy(),
            item["intrinsics"].numpy(),
            folder / "point_cloud.ply",
        ),
    ]
