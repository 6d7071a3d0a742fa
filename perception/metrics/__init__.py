"""Evaluation metrics, as streaming accumulators usable batch by batch.

- `SegmentationMetrics`: dataset-level confusion matrix -> pixel accuracy, per-class IoU, mIoU
  over the classes present in the ground truth; `paired_bootstrap`: how far one model is ahead of
  another on the same clips, with a 95% interval over clips; `recall_by_distance_counts`: a class's
  recall per band of true distance.
- `DepthMetrics`: AbsRel, SqRel, RMSE, RMSElog, delta < 1.25^k, optional 80 m cap;
  `abs_rel_by_distance_sums`: a class's depth AbsRel per band of true distance.
- `EgoMotionMetrics`: translation (m) and rotation (deg) error per frame pair, ATE per clip.
- `TemporalConsistency`: TC, its ground-truth ceiling, and flicker through the label warp.
"""

from .depth import DepthMetrics, abs_rel_by_distance_sums
from .ego_motion import (
    EgoMotionMetrics,
    absolute_trajectory_error,
    compose_trajectory,
    pose_errors,
    rotation_angle,
)
from .segmentation import (
    SegmentationMetrics,
    confusion_matrix,
    iou_from_confusion,
    miou_and_accuracy,
    paired_bootstrap,
    recall_by_distance_counts,
)
from .temporal import TemporalConsistency

__all__ = [
    "DepthMetrics",
    "EgoMotionMetrics",
    "SegmentationMetrics",
    "TemporalConsistency",
    "abs_rel_by_distance_sums",
    "absolute_trajectory_error",
    "compose_trajectory",
    "confusion_matrix",
    "iou_from_confusion",
    "miou_and_accuracy",
    "paired_bootstrap",
    "pose_errors",
    "recall_by_distance_counts",
    "rotation_angle",
]
