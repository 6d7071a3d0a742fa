"""Metrics against small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.conventions import intrinsics, pose6_to_matrix
from perception.metrics import (
    DepthMetrics,
    EgoMotionMetrics,
    SegmentationMetrics,
    TemporalConsistency,
    abs_rel_by_distance_sums,
    absolute_trajectory_error,
    compose_trajectory,
    paired_bootstrap,
    pose_errors,
    recall_by_distance_counts,
)
from perception.training.evaluation import _Scores

# Ground truth and prediction over 9 pixels; confusion rows = GT, columns = prediction:
#   [[2, 1, 0],
#    [0, 1, 1],
#    [1, 0, 3]]
TARGET = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
PRED = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])


def test_confusion_iou_miou_by_hand():
    m = SegmentationMetrics(num_classes=3)
    m.update(PRED.reshape(3, 3), TARGET.reshape(3, 3))
    r = m.compute()
    np.testing.assert_array_equal(r["confusion"], [[2, 1, 0], [0, 1, 1], [1, 0, 3]])
    np.testing.assert_allclose(r["iou"], [2 / 4, 1 / 3, 3 / 5])
    assert r["miou"] == pytest.approx((2 / 4 + 1 / 3 + 3 / 5) / 3)
    assert r["pixel_accuracy"] == pytest.approx(6 / 9)


def test_recall_by_distance_by_hand():
    # TARGET/PRED above with a true distance per pixel; bands [0, 5), [5, 20), [20, inf)
    depth = np.array([1.0, 6.0, 30.0, 2.0, 25.0, 4.0, 5.0, 19.9, 100.0])
    hits, totals = recall_by_distance_counts(PRED, TARGET, depth, [0, 2], (0.0, 5.0, 20.0, math.inf))
    # class 0: pixels at 1 (hit), 6 (hit), 30 m (missed); class 2: 4 (hit), 5 (hit), 19.9 (hit), 100 m (missed)
    np.testing.assert_array_equal(totals, [[1, 1, 1], [1, 2, 1]])
    np.testing.assert_array_equal(hits, [[1, 1, 0], [1, 2, 0]])
    near, _ = recall_by_distance_counts(PRED, TARGET, depth, [0], (0.0, 5.0))  # beyond the last edge: not counted
    np.testing.assert_array_equal(near, [[1]])
    with pytest.raises(ValueError, match="differ in size"):
        recall_by_distance_counts(PRED, TARGET, depth[:4], [0], (0.0, 5.0))


def test_abs_rel_by_distance_by_hand():
    # TARGET above with a true distance per pixel and a prediction 10% long at class 0's pixels, twice as far at
    # class 2's; bands [0, 5), [5, 20), [20, inf)
    depth = np.array([1.0, 6.0, 30.0, 2.0, 25.0, 4.0, 5.0, 19.9, 100.0])
    pred = np.where(TARGET == 0, 1.1, np.where(TARGET == 2, 2.0, 1.0)) * depth
    sums, counts = abs_rel_by_distance_sums(pred, TARGET, depth, [0, 2], (0.0, 5.0, 20.0, math.inf))
    np.testing.assert_array_equal(counts, [[1, 1, 1], [1, 2, 1]])
    np.testing.assert_allclose(sums, [[0.1, 0.1, 0.1], [1.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match="differ in size"):
        abs_rel_by_distance_sums(pred, TARGET, depth[:4], [0], (0.0, 5.0))


def test_paired_bootstrap_by_hand():
    """Two clips, two classes. Model b is perfect; model a is perfect on clip 0 and half right on clip 1.
    Both clips: a's IoUs are 3/5 (mIoU 0.6, accuracy 6/8), b's 1, so b leads by 0.4 and 0.25. A resample
    is clip 0 twice (lead 0, p = 1/4), clip 1 twice (lead 1 - 1/3, p = 1/4) or one of each (0.4, p = 1/2),
    so the 95% interval runs from 0 to 2/3 exactly."""
    a = np.array([[[2, 0], [0, 2]], [[1, 1], [1, 1]]])
    b = np.array([[[2, 0], [0, 2]], [[2, 0], [0, 2]]])
    r = paired_bootstrap(a, b, iterations=2000, seed=0)
    assert r["clips"] == 2 and r["miou"] == pytest.approx(0.4) and r["pixel_accuracy"] == pytest.approx(0.25)
    assert r["miou_ci95"] == pytest.approx([0.0, 2 / 3])
    assert r["pixel_accuracy_ci95"] == pytest.approx([0.0, 0.5])
    same = paired_bootstrap(a, a)
    assert same["miou"] == 0.0 and same["miou_ci95"] == [0.0, 0.0]
    flipped = paired_bootstrap(b, a, seed=0)  # a behind b: the same interval, negated
    assert flipped["miou_ci95"] == pytest.approx([-2 / 3, 0.0])
    with pytest.raises(ValueError, match=r"\(2, 2, 2\) and \(1, 2, 2\)"):
        paired_bootstrap(a, b[:1])


@pytest.mark.parametrize("repeats", [1, 2])
def test_paired_bootstrap_over_three_clips_spans_their_range(repeats):
    """Model a is perfect; model b takes e of clip k's 100 class-0 pixels for class 1 (e = 0, 10, 30), so
    b's pooled mIoU falls as the resample's mean e rises, and each clip's own lead is its worst case. With
    3 clips a resample is the worst clip three times with p = 1/27 > 2.5%: the interval ends at the worst
    and best clip's own lead. With each clip twice (6 clips) those resamples are rare and the interval
    lies strictly inside."""
    errors = [0, 10, 30] * repeats
    b = np.array([[[100 - e, e], [0, 100]] for e in errors])
    a = np.array([[[100, 0], [0, 100]]] * len(errors))

    def lead(e: float) -> float:  # b's mIoU minus a's (1) at mean error e per clip
        return ((100 - e) / 100 + 100 / (100 + e)) / 2 - 1

    low, high = paired_bootstrap(a, b, iterations=4000, seed=0)["miou_ci95"]
    if repeats == 1:
        assert [low, high] == pytest.approx([lead(30), lead(0)])
    else:
        assert lead(30) < low < high < lead(0)


def test_miou_is_dataset_level_and_skips_classes_absent_from_gt():
    m = SegmentationMetrics(num_classes=4)
    m.update(torch.from_numpy(PRED[:4]), torch.from_numpy(TARGET[:4]))  # batch by batch, torch or numpy
    m.update(PRED[4:], TARGET[4:])
    m.update(np.array([3, 255]), np.array([2, 255]))  # class 3 predicted but never in GT; 255 ignored
    r = m.compute()
    assert r["present"].tolist() == [True, True, True, False]
    assert r["iou"][3] == 0.0
    assert r["miou"] == pytest.approx((2 / 4 + 1 / 3 + 3 / 6) / 3)  # class 2: TP 3, GT 5, pred 4
    assert r["pixel_accuracy"] == pytest.approx(6 / 10)


def test_depth_metrics_on_three_numbers():
    m = DepthMetrics()
    m.update(np.array([1.0, 3.0, 2.0]), np.array([1.0, 2.0, 4.0]))
    r = m.compute()
    assert r["abs_rel"] == pytest.approx((0 + 1 / 2 + 2 / 4) / 3)
    assert r["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert r["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert r["rmse_log"] == pytest.approx(math.sqrt((math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3))
    assert (r["delta1"], r["delta2"], r["delta3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_depth_cap_and_sky_are_excluded():
    m = DepthMetrics(cap=80.0)
    m.update(torch.tensor([[1.0, 2.0, 200.0, 5.0]]), torch.tensor([[1.0, 2.0, 100.0, 1000.0]]))
    r = m.compute()
    assert r["abs_rel"] == 0.0 and r["delta1"] == 1.0 and r["count"] == 1
    clipped = DepthMetrics(cap=80.0)
    clipped.update(np.array([200.0]), np.array([40.0]))  # prediction clipped to the cap: 80 vs 40
    assert clipped.compute()["abs_rel"] == pytest.approx(1.0)


def test_depth_image_vs_pixel_reduction():
    gt = np.array([[[1.0, 1.0]], [[1.0, 1.0]]])
    pred = np.array([[[2.0, 2.0]], [[1.0, 1.0]]])
    img, pix = DepthMetrics(reduction="image"), DepthMetrics(reduction="pixel")
    img.update(pred, gt)
    pix.update(pred, gt)
    assert img.compute()["abs_rel"] == pytest.approx(0.5) and pix.compute()["abs_rel"] == pytest.approx(0.5)
    assert img.compute()["rmse"] == pytest.approx(0.5)  # mean of per-image RMSE (1 and 0)
    assert pix.compute()["rmse"] == pytest.approx(math.sqrt(0.5))


def test_pose_error_by_hand():
    pred = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.1])  # 1 m forward, yaw 0.1 rad
    gt = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    t, r = pose_errors(pred, gt)
    assert t == pytest.approx(1.0) and r == pytest.approx(math.degrees(0.1))
    t2, r2 = pose_errors(torch.from_numpy(pose6_to_matrix(pred)), pose6_to_matrix(gt))  # matrices work too
    assert t2 == pytest.approx(1.0) and r2 == pytest.approx(math.degrees(0.1))
    _, tiny = pose_errors(np.array([0, 0, 0, 1e-7, 0, 0.0]), np.zeros(6))
    assert tiny == pytest.approx(math.degrees(1e-7), rel=1e-6)  # exact near zero (no acos)


def test_ate_by_hand():
    gt = np.tile([1.0, 0, 0, 0, 0, 0], (3, 1))
    pred = np.tile([1.1, 0, 0, 0, 0, 0], (3, 1))
    assert compose_trajectory(gt)[-1][0, 3] == pytest.approx(3.0)
    assert absolute_trajectory_error(pred, gt) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.09) / 4))
    m = EgoMotionMetrics()
    m.update_clip(pred, gt)
    r = m.compute()
    assert r["ate_m"] == pytest.approx(math.sqrt(0.035)) and r["pairs"] == 3 and r["clips"] == 1
    assert r["translation_error_m"] == pytest.approx(0.1) and r["rotation_error_deg"] == pytest.approx(0.0)


def _scene(h: int = 8, w: int = 8):
    return np.full((h, w), 10.0), np.eye(4), intrinsics(w, h, 90.0)


def test_tc_is_one_for_identity_motion_and_steady_predictions():
    depth, T, K = _scene()
    labels = np.ones((8, 8), np.int64)
    labels[:, :4] = 7
    m = TemporalConsistency()
    m.update(labels, labels, labels, labels, depth, T, K, depth_prev=depth)
    r = m.compute()
    assert r["tc"] == 1.0 and r["tc_ceiling"] == 1.0 and r["flicker"] == 0.0 and r["valid_fraction"] == 1.0


def test_flicker_and_tc_by_hand():
    depth, T, K = _scene()
    gt = np.ones((8, 8), np.int64)  # a building, not moving
    prev = np.ones((8, 8), np.int64)
    cur = prev.copy()
    cur[0, :2] = 7  # two of 64 pixels change label
    m = TemporalConsistency()
    m.update(prev, cur, gt, gt, depth, T, K)
    r = m.compute()
    assert r["flicker"] == pytest.approx(2 / 64)
    assert r["tc"] == pytest.approx((62 / 64 + 0.0) / 2)  # IoU(building) = 62/64, IoU(road) = 0/2
    assert r["tc_ceiling"] == 1.0


def test_moving_classes_are_masked():
    depth, T, K = _scene()
    gt = np.ones((8, 8), np.int64)
    gt[:2] = 4  # pedestrians: their motion is not the camera's
    pred_prev = gt.copy()
    pred_cur = np.ones((8, 8), np.int64)
    pred_cur[:2] = 10  # a label change on moving pixels does not count
    m = TemporalConsistency()
    m.update(torch.from_numpy(pred_prev[None]), pred_cur[None], gt[None], gt[None], depth[None], T[None], K)
    r = m.compute()
    assert r["valid_fraction"] == pytest.approx(48 / 64) and r["flicker"] == 0.0 and r["tc"] == 1.0


def test_tc_follows_camera_motion():
    # camera moves 1 m forward, the scene is a wall 10 m ahead: warping with the true motion keeps
    # the prediction consistent, while the identity motion would not.
    h, w = 16, 16
    K = intrinsics(w, h, 90.0)
    T = pose6_to_matrix(np.array([1.0, 0, 0, 0, 0, 0]))
    depth_prev, depth_cur = np.full((h, w), 10.0), np.full((h, w), 9.0)
    cols = np.arange(w)
    prev = np.broadcast_to(np.where(cols < w // 2, 1, 9), (h, w))
    cur = prev.copy()
    m = TemporalConsistency()
    m.update(prev, cur, prev, cur, depth_cur, T, K, depth_prev=depth_prev)
    assert m.compute()["tc"] == 1.0


def test_report_per_class_recall_precision_and_share():
    """Report entries from a hand-made confusion: rows are true classes, columns predictions
    (true 0: predicted 0, 2; true 1: predicted 0, 1, 1; true 2: predicted 2)."""
    scores = _Scores(3)
    scores.seg.update(torch.tensor([[0, 0, 1, 1, 2, 2]]), torch.tensor([[0, 1, 1, 1, 2, 0]]))
    r = scores.compute(["a", "b", "c"])
    assert r["recall"] == pytest.approx({"a": 1 / 2, "b": 2 / 3, "c": 1.0})
    assert r["precision"] == pytest.approx({"a": 1 / 2, "b": 1.0, "c": 1 / 2})
    assert r["pixel_share"] == pytest.approx({"a": 2 / 6, "b": 3 / 6, "c": 1 / 6})
    assert r["iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 1 / 2})
