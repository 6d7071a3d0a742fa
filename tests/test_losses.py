import math

import pytest
import torch

from perception.losses import depth_loss, pose_loss, segmentation_loss


def test_segmentation_loss_is_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # one pixel, two classes
    target = torch.tensor([[[0]]])
    assert segmentation_loss(logits, target).item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))
    weighted = segmentation_loss(logits, target, class_weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))  # weighted mean over one pixel


def test_depth_loss_ignores_sky_and_compares_logs():
    true = torch.tensor([[[10.0, 1000.0]]])  # the second pixel is sky
    pred = torch.log(torch.tensor([[[20.0, 3.0]]]))
    assert depth_loss(pred, true, kind="l1").item() == pytest.approx(math.log(2.0), rel=1e-5)
    # SILog of a constant log ratio g: sqrt(g^2 - 0.85 g^2)
    assert depth_loss(pred, true, kind="silog").item() == pytest.approx(math.sqrt(0.15) * math.log(2.0), rel=1e-4)


def test_depth_loss_all_sky_is_zero_with_a_graph():
    pred = torch.zeros((1, 2, 2), requires_grad=True)
    loss = depth_loss(pred, torch.full((1, 2, 2), 1000.0))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_pose_loss_by_hand():
    pred = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.1]])
    target = torch.zeros(1, 6)
    assert pose_loss(pred, target, rotation_weight=10.0).item() == pytest.approx(1.0 / 3 + 10.0 * 0.1 / 3)
