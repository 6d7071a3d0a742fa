"""Dataset-level segmentation metrics from a streaming confusion matrix.

Pixels from every batch add into one confusion matrix, so mIoU is computed over the whole
dataset, not averaged per batch (the seed's defect).
"""

from __future__ import annotations

import numpy as np
import torch


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def confusion_matrix(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    mask: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    `pred` and `target` are class-id arrays of one shape; pixels whose target is `ignore_index`,
    outside [0, num_classes), or outside `mask` are skipped.
    """
    p = _to_numpy(pred).astype(np.int64).ravel()
    t = _to_numpy(target).astype(np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction and target differ in size: {p.size} vs {t.size}")
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    if mask is not None:
        keep &= _to_numpy(mask).astype(bool).ravel()
    return np.bincount(t[keep] * num_classes + p[keep], minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def distance_banded(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    depth_m: np.ndarray | torch.Tensor,
    edges_m: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`pred`, `target` and `depth_m` flattened (ValueError where they differ in size) and each pixel's band of true
    distance: b where `edges_m[b] <= depth_m < edges_m[b + 1]`, -1 outside the bands."""
    p, t, d = (_to_numpy(x).ravel() for x in (pred, target, depth_m))
    if not p.shape == t.shape == d.shape:
        raise ValueError(f"prediction, target and depth differ in size: {p.size}, {t.size}, {d.size}")
    band = np.digitize(d, edges_m) - 1
    band[band >= len(edges_m) - 1] = -1
    return p, t, d, band


def recall_by_distance_counts(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    depth_m: np.ndarray | torch.Tensor,
    classes: list[int],
    edges_m: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Per class and distance band, how many of the class's true pixels were predicted as it: (hits, totals),
    both (len(classes), len(edges_m) - 1) int64.

    A pixel falls in band b when `edges_m[b] <= depth_m < edges_m[b + 1]` (its true distance). Recall by
    distance shows what a mean IoU hides: whether a road user is seen when it is close, where a miss
    becomes a collision.
    """
    p, t, _, band = distance_banded(pred, target, depth_m, edges_m)
    inside = band >= 0
    hits = np.zeros((len(classes), len(edges_m) - 1), np.int64)
    totals = np.zeros_like(hits)
    for i, c in enumerate(classes):
        mine = inside & (t == c)
        totals[i] = np.bincount(band[mine], minlength=len(edges_m) - 1)
        hits[i] = np.bincount(band[mine & (p == c)], minlength=len(edges_m) - 1)
    return hits, totals


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN where the class appears in neither GT nor prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class SegmentationMetrics:
    """Streaming pixel accuracy, per-class IoU and mIoU over the classes present in the ground truth.

    `update(pred, target)` takes class ids of any matching shape (NumPy or torch); `compute()`
    returns `pixel_accuracy`, `miou`, `iou` (per class, NaN if never seen), `present` (classes
    with ground-truth pixels) and `confusion`.
    """

    def __init__(self, num_classes: int = 22, ignore_index: int | None = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(
        self,
        pred: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Add a batch of predicted and true class ids (optionally only where `mask` is set); returns the batch's
        own confusion matrix."""
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index, mask)
        self.confusion += cm
        return cm

    def compute(self) -> dict:
        cm = self.confusion
        total = cm.sum()
        iou = iou_from_confusion(cm)
        present = cm.sum(1) > 0
        return {
            "pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
            "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
            "iou": iou,
            "present": present,
            "confusion": cm.copy(),
        }


def miou_and_accuracy(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mIoU (over classes present in the ground truth) and pixel accuracy of a stack of confusion matrices (..., C, C)."""
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    gt, pred = cm.sum(-1), cm.sum(-2)
    present = gt > 0
    iou = np.divide(tp, gt + pred - tp, out=np.zeros_like(tp), where=present)
    miou = (iou * present).sum(-1) / np.maximum(present.sum(-1), 1)
    accuracy = tp.sum(-1) / np.maximum(gt.sum(-1), 1)
    return miou, accuracy


def paired_bootstrap(confusions_a: np.ndarray, confusions_b: np.ndarray, iterations: int = 2000, seed: int = 0) -> dict:
    """How much model b is ahead of model a, scored on the same clips: b - a in dataset-level mIoU and
    pixel accuracy, with a 95% interval from resampling the clips with replacement (both models get
    the same resample, so what the clips share cancels out).

    `confusions_a`, `confusions_b`: per-clip confusion matrices (clips, C, C), rows = ground truth.
    An interval that excludes 0 says the difference is larger than the choice of clips explains.
    """
    a, b = np.asarray(confusions_a), np.asarray(confusions_b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"need two equal stacks of per-clip confusion matrices, got shapes {a.shape} and {b.shape}")
    n = a.shape[0]
    picks = np.random.default_rng(seed).integers(0, n, size=(iterations, n))
    counts = np.stack([np.bincount(p, minlength=n) for p in picks]).astype(np.float64)  # (iterations, clips)
    miou_a, acc_a = miou_and_accuracy(np.einsum("rn,nij->rij", counts, a))
    miou_b, acc_b = miou_and_accuracy(np.einsum("rn,nij->rij", counts, b))
    full_a, full_b = miou_and_accuracy(a.sum(0)), miou_and_accuracy(b.sum(0))

    def ci(d: np.ndarray) -> list[float]:
        return [float(v) for v in np.percentile(d, [2.5, 97.5])]

    return {
        "clips": n,
        "iterations": iterations,
        "miou": float(full_b[0] - full_a[0]),
        "miou_ci95": ci(miou_b - miou_a),
        "pixel_accuracy": float(full_b[1] - full_a[1]),
        "pixel_accuracy_ci95": ci(acc_b - acc_a),
    }
