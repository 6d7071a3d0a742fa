"""Training losses of the perception curriculum, with the defects of the design's original code fixed.

- Segmentation: cross-entropy, optionally class-weighted, so thin classes (poles, signs, road
  lines) are not drowned by road and sky.
- Depth: L1 on log-depth or the scale-invariant log loss (SILog, Eigen et al. 2014), both on
  metres, over pixels with a real surface (the 1000 m far plane of the sky is excluded). The seed
  used MSE on raw metres scaled by 1/6000, which let the sky dominate and the head die.
- Ego-motion: L1 on the camera-relative pose6 (metres and radians), never on absolute matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from perception.conventions import FAR_PLANE_M

MIN_DEPTH_M = 0.1
MAX_VALID_DEPTH_M = FAR_PLANE_M * 0.99  # beyond this the depth camera saw sky


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = 255,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of (N, C, H, W) logits against (N, H, W) class ids.

    `pixel_weights` (N, H, W) scale each pixel's term on top of its class weight; the mean is taken over the
    combined weights, as the class-weighted mean is over the class weights.
    """
    target = target.long()
    if pixel_weights is None:
        return F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index)
    per_pixel = F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    w = pixel_weights * valid
    if class_weights is not None:
        w = w * class_weights[torch.where(valid, target, 0)]
    return (per_pixel * pixel_weights).sum() / w.sum().clamp(min=1e-12)


def near_pixel_weights(
    target: torch.Tensor, depth_m: torch.Tensor, class_ids: Sequence[int], within_m: float, weight: float
) -> torch.Tensor:
    """Per-pixel loss weights: `weight` on the pixels of the classes `class_ids` nearer than `within_m` metres, 1
    elsewhere.

    For the classes whose close views are rare in the recordings (a pedestrian a few metres ahead) and look like
    another class's (up close a pedestrian's torso is a box of one colour, as a car's body is), or whose depth a
    network takes for the road's behind them.
    """
    near = torch.isin(target.long(), torch.as_tensor(list(class_ids), device=target.device)) & (depth_m < within_m)
    return torch.where(near, weight, 1.0).to(torch.float32)


def depth_valid_mask(depth_m: torch.Tensor) -> torch.Tensor:
    """Pixels with a surface closer than the far plane (sky and unlabeled infinity excluded)."""
    return (depth_m > MIN_DEPTH_M) & (depth_m < MAX_VALID_DEPTH_M)


def depth_loss(
    log_depth_pred: torch.Tensor,
    depth_m: torch.Tensor,
    kind: str = "silog",
    silog_lambda: float = 0.85,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth loss between predicted log-depth and true metres, over valid pixels; shapes broadcast to (N, H, W).

    `kind="l1"`: mean |log d_pred - log d_true|. `kind="silog"`: sqrt(mean(g^2) - lambda * mean(g)^2)
    with g the log difference, per image, averaged over the batch. `pixel_weights` (N, H, W) make those means
    weighted ones (1 everywhere: unweighted).
    """
    pred = log_depth_pred.reshape(depth_m.shape)
    mask = depth_valid_mask(depth_m)
    if not mask.any():
        return pred.sum() * 0.0  # keeps the graph for DDP when a batch is all sky
    w = mask.to(pred.dtype) if pixel_weights is None else pixel_weights.reshape(depth_m.shape) * mask
    diff = torch.where(mask, pred - torch.log(depth_m.clamp(min=MIN_DEPTH_M)), torch.zeros_like(pred))
    if kind == "l1":
        return (w * diff.abs()).sum() / w.sum()
    if kind != "silog":
        raise ValueError(f"unknown depth loss {kind!r}; known: l1, silog")
    dims = tuple(range(1, diff.dim()))
    n = w.sum(dims).clamp(min=1e-12)
    mean = (w * diff).sum(dims) / n
    mean_sq = (w * diff * diff).sum(dims) / n
    return torch.sqrt((mean_sq - silog_lambda * mean * mean).clamp(min=1e-8)).mean()


def pose_loss(pred_pose6: torch.Tensor, target_pose6: torch.Tensor, rotation_weight: float = 10.0) -> torch.Tensor:
    """L1 on (..., 6) relative poses: translation in metres plus `rotation_weight` x angles in radians.

    The weight balances the scales: a car moves ~1 m per 0.1 s step but turns only ~0.05 rad.
    """
    err = (pred_pose6 - target_pose6).abs()
    return err[..., :3].mean() + rotation_weight * err[..., 3:].mean()
