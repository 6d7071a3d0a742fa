import math

import pytest
import torch

from perception.losses import depth_loss, near_pixel_weights, pose_loss, segmentation_loss


def test_segmentation_loss_is_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # one pixel, two classes
    target = torch.tensor([[[0]]])
    assert segmentation_loss(logits, target).item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))
    weighted = segmentation_loss(logits, target, class_weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))  # weighted mean over one pixel


def test_pixel_weights_scale_each_pixel_on_top_of_its_class_weight():
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, 5.0]]]])  # three pixels, two classes
    target = torch.tensor([[[0, 1, 255]]])  # the third pixel is ignored
    ce = [-math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(math.e / (math.e + 1))]
    pixel_weights = torch.tensor([[[3.0, 1.0, 7.0]]])
    got = segmentation_loss(logits, target, pixel_weights=pixel_weights)
    assert got.item() == pytest.approx((3 * ce[0] + ce[1]) / 4)
    got = segmentation_loss(logits, target, torch.tensor([2.0, 0.5]), pixel_weights=pixel_weights)
    assert got.item() == pytest.approx((3 * 2 * ce[0] + 0.5 * ce[1]) / (3 * 2 + 0.5))
    ones = torch.ones(1, 1, 3)
    assert segmentation_loss(logits, target, torch.tensor([2.0, 0.5]), pixel_weights=ones).item() == pytest.approx(
        segmentation_loss(logits, target, torch.tensor([2.0, 0.5])).item()
    )


def test_near_pixel_weights_pick_the_class_within_the_distance():
    target = torch.tensor([[4, 4, 1, 4]])
    depth_m = torch.tensor([[3.0, 12.0, 3.0, 9.99]])
    assert near_pixel_weights(target, depth_m, [4], within_m=10.0, weight=5.0).tolist() == [[5.0, 1.0, 1.0, 5.0]]
    assert near_pixel_weights(target, depth_m, [4, 1], within_m=10.0, weight=5.0).tolist() == [[5.0, 1.0, 5.0, 5.0]]


def test_depth_loss_ignores_sky_and_compares_logs():
    true = torch.tensor([[[10.0, 1000.0]]])  # the second pixel is sky
    pred = torch.log(torch.tensor([[[20.0, 3.0]]]))
    assert depth_loss(pred, true, kind="l1").item() == pytest.approx(math.log(2.0), rel=1e-5)
    # SILog of a constant log ratio g: sqrt(g^2 - 0.85 g^2)
    assert depth_loss(pred, true, kind="silog").item() == pytest.approx(math.sqrt(0.15) * math.log(2.0), rel=1e-4)


def test_depth_loss_pixel_weights_make_its_means_weighted_ones():
    true = torch.tensor([[[10.0, 10.0, 1000.0]]])  # the third pixel is sky
    pred = torch.log(torch.tensor([[[20.0, 10.0, 3.0]]]))  # g = log 2, 0
    weights = torch.tensor([[[3.0, 1.0, 9.0]]])
    g = math.log(2.0)
    assert depth_loss(pred, true, kind="l1", pixel_weights=weights).item() == pytest.approx(3 * g / 4, rel=1e-5)
    mean, mean_sq = 3 * g / 4, 3 * g * g / 4
    expected = math.sqrt(mean_sq - 0.85 * mean * mean)
    assert depth_loss(pred, true, pixel_weights=weights).item() == pytest.approx(expected, rel=1e-4)
    ones = torch.ones(1, 1, 3)
    assert depth_loss(pred, true, pixel_weights=ones).item() == pytest.approx(depth_loss(pred, true).item())


def test_depth_loss_all_sky_is_zero_with_a_graph():
    pred = torch.zeros((1, 2, 2), requires_grad=True)
    loss = depth_loss(pred, torch.full((1, 2, 2), 1000.0))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_pose_loss_by_hand():
    pred = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.1]])
    target = torch.zeros(1, 6)
    assert pose_loss(pred, target, rotation_weight=10.0).item() == pytest.approx(1.0 / 3 + 10.0 * 0.1 / 3)
