"""Temporal consistency (TC) and flicker, through the conventions' label warp.

For each pair of frames the label map at t-1 is warped into frame t with the ground-truth depth of
frame t and the true relative pose (`conventions.warp_labels`: back-project, move, project,
nearest sampling). Pixels that leave the view, fail the depth check against frame t-1 (when its
depth is given) or belong to moving classes (in the warped or the current ground truth) are masked.

- TC: mIoU between the warped prediction and the current prediction, over valid pixels, from one
  dataset-level confusion matrix, averaged over classes present in either map.
- TC ceiling: the same for warped ground truth against ground truth (what a perfect model scores).
- Flicker: among valid pixels whose ground-truth label did not change (warped GT == GT), the share
  whose predicted label changed.
"""

from __future__ import annotations

import numpy as np
import torch

from perception.conventions import MOVING_CLASSES, warp_labels, warp_to_current

from .segmentation import confusion_matrix, iou_from_confusion

Array = np.ndarray | torch.Tensor


def _np(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _mean_iou(cm: np.ndarray) -> float:
    iou = iou_from_confusion(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class TemporalConsistency:
    """Streaming TC, TC ceiling and flicker; run one for the temporal model and one for the per-frame baseline."""

    def __init__(
        self, num_classes: int = 22, depth_tolerance: float = 0.05, ignore_classes: tuple[int, ...] = MOVING_CLASSES
    ) -> None:
        self.num_classes = num_classes
        self.depth_tolerance = depth_tolerance
        self.ignore_classes = tuple(ignore_classes)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.pred_confusion = np.zeros((c, c), dtype=np.int64)
        self.gt_confusion = np.zeros((c, c), dtype=np.int64)
        self.stable = 0
        self.flickered = 0
        self.valid = 0
        self.pixels = 0

    def update(
        self,
        pred_prev: Array,
        pred_cur: Array,
        gt_prev: Array,
        gt_cur: Array,
        depth_cur: Array,
        T_rel: Array,
        K: Array,
        depth_prev: Array | None = None,
    ) -> None:
        """Add one frame pair, or a batch of pairs with a leading axis N (T_rel (N, 4, 4), K (3, 3) or (N, 3, 3)).

        Label maps are class ids (H, W); depths are metres (H, W); `T_rel = inv(M_{t-1}) @ M_t`.
        """
        pred_prev, pred_cur, gt_prev, gt_cur = map(_np, (pred_prev, pred_cur, gt_prev, gt_cur))
        depth_cur, T_rel, K = _np(depth_cur), _np(T_rel), _np(K)
        depth_prev = None if depth_prev is None else _np(depth_prev)
        if gt_cur.ndim == 3:
            for i in range(gt_cur.shape[0]):
                self.update(
                    pred_prev[i],
                    pred_cur[i],
                    gt_prev[i],
                    gt_cur[i],
                    depth_cur[i],
                    T_rel[i],
                    K if K.ndim == 2 else K[i],
                    None if depth_prev is None else depth_prev[i],
                )
            return
        warped_gt, valid = warp_labels(
            gt_prev, depth_cur, T_rel, K, depth_prev, self.depth_tolerance, self.ignore_classes
        )
        warped_pred, _ = warp_to_current(pred_prev, depth_cur, T_rel, K, depth_prev, self.depth_tolerance)
        if self.ignore_classes:
            valid &= ~np.isin(gt_cur, self.ignore_classes)
        c = self.num_classes
        self.pred_confusion += confusion_matrix(warped_pred, pred_cur, c, None, valid)
        self.gt_confusion += confusion_matrix(warped_gt, gt_cur, c, None, valid)
        stable = valid & (warped_gt == gt_cur)
        self.stable += int(stable.sum())
        self.flickered += int((stable & (warped_pred != pred_cur)).sum())
        self.valid += int(valid.sum())
        self.pixels += int(valid.size)

    def compute(self) -> dict[str, float]:
        return {
            "tc": _mean_iou(self.pred_confusion),
            "tc_ceiling": _mean_iou(self.gt_confusion),
            "flicker": self.flickered / self.stable if self.stable else float("nan"),
            "valid_fraction": self.valid / self.pixels if self.pixels else float("nan"),
            "pairs_pixels": self.valid,
        }
