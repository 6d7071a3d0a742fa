"""Streaming monocular depth metrics: AbsRel, SqRel, RMSE, RMSElog, delta < 1.25^k.

Conventions (Eigen et al. 2014, as in the KITTI/monodepth evaluations): ground truth must lie in
(`min_depth`, `max_valid`) (the 1000 m far plane is sky, not a surface); with `cap` (e.g. 80 m)
only ground truth up to the cap counts and predictions are clipped to [min_depth, cap].
Metrics are computed per image and averaged over images (`reduction="image"`, the usual
convention), or pooled over all valid pixels (`reduction="pixel"`).
"""

from __future__ import annotations

import numpy as np
import torch

from perception.conventions import FAR_PLANE_M

from .segmentation import distance_banded

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)


def _sums(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel sums that the metrics are built from (valid pixels only)."""
    ratio = np.maximum(pred / gt, gt / pred)
    log_diff = np.log(pred) - np.log(gt)
    diff = pred - gt
    return np.array(
        [
            np.sum(np.abs(diff) / gt),
            np.sum(diff**2 / gt),
            np.sum(diff**2),
            np.sum(log_diff**2),
            np.sum(ratio < 1.25),
            np.sum(ratio < 1.25**2),
            np.sum(ratio < 1.25**3),
            gt.size,
        ],
        dtype=np.float64,
    )


def _finish(s: np.ndarray) -> np.ndarray:
    n = s[7]
    return np.array([s[0] / n, s[1] / n, np.sqrt(s[2] / n), np.sqrt(s[3] / n), s[4] / n, s[5] / n, s[6] / n])


class DepthMetrics:
    """Streaming depth metrics over batches of (N, H, W) or (H, W) depth maps in metres.

    `compute()` returns a dict with `abs_rel`, `sq_rel`, `rmse`, `rmse_log`, `delta1..3` and
    `count` (images for `reduction="image"`, pixels for `"pixel"`).
    """

    def __init__(
        self,
        cap: float | None = None,
        min_depth: float = 1e-3,
        max_valid: float = FAR_PLANE_M * 0.99,
        reduction: str = "image",
    ) -> None:
        if reduction not in ("image", "pixel"):
            raise ValueError(f"reduction must be 'image' or 'pixel', got {reduction!r}")
        self.cap, self.min_depth, self.max_valid, self.reduction = cap, min_depth, max_valid, reduction
        self.reset()

    def reset(self) -> None:
        self._acc = np.zeros(8 if self.reduction == "pixel" else 7)
        self._count = 0

    def update(
        self,
        pred: np.ndarray | torch.Tensor,
        gt: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add predicted and true depth in metres (same shape; a leading batch axis when 3-D or more)."""
        p, g = _np(pred), _np(gt)
        if p.shape != g.shape:
            raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ")
        m = None if mask is None else _np(mask).astype(bool)
        if p.ndim <= 2:
            p, g = p[None], g[None]
            m = None if m is None else m[None]
        for i in range(p.shape[0]):
            valid = (g[i] > self.min_depth) & (g[i] < self.max_valid) & np.isfinite(p[i])
            if self.cap is not None:
                valid &= g[i] <= self.cap
            if m is not None:
                valid &= m[i]
            if not valid.any():
                continue
            hi = self.cap if self.cap is not None else np.inf
            s = _sums(np.clip(p[i][valid], self.min_depth, hi), g[i][valid])
            if self.reduction == "pixel":
                self._acc += s
                self._count += int(s[7])
            else:
                self._acc += _finish(s)
                self._count += 1

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            return {**{k: float("nan") for k in METRIC_NAMES}, "count": 0}
        values = _finish(self._acc) if self.reduction == "pixel" else self._acc / self._count
        return {**{k: float(v) for k, v in zip(METRIC_NAMES, values, strict=False)}, "count": self._count}


def abs_rel_by_distance_sums(
    pred_m: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    depth_m: np.ndarray | torch.Tensor,
    classes: list[int],
    edges_m: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Per class and band of true distance, the summed AbsRel (|predicted - true| / true depth) over the pixels
    whose true label (`target`) is the class, and how many they are: (sums float64, counts int64), both
    (len(classes), len(edges_m) - 1). Their ratio is the class's depth AbsRel in the band.

    A pixel falls in band b when `edges_m[b] <= depth_m < edges_m[b + 1]`. A mean AbsRel over the frame hides
    the road users: a pedestrian a few metres ahead whose depth is taken for the road's behind it is a handful
    of pixels among the road's thousands, and it is what an emergency brake reads.
    """
    p, t, d, band = distance_banded(pred_m, target, depth_m, edges_m)
    p, d = p.astype(np.float64), d.astype(np.float64)
    inside = (band >= 0) & (d > 0)
    sums = np.zeros((len(classes), len(edges_m) - 1))
    counts = np.zeros((len(classes), len(edges_m) - 1), np.int64)
    for i, c in enumerate(classes):
        mine = inside & (t == c)
        sums[i] = np.bincount(band[mine], weights=np.abs(p[mine] - d[mine]) / d[mine], minlength=len(edges_m) - 1)
        counts[i] = np.bincount(band[mine], minlength=len(edges_m) - 1)
    return sums, counts
