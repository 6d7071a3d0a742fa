"""benchmarks/class_bias.py: per-class logit offsets fitted by coordinate ascent on mIoU, on tiny hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

class_bias = load_benchmark("class_bias")


def test_miou_counts_only_classes_with_ground_truth_pixels():
    cm = np.array([[3, 1, 0], [1, 1, 0], [0, 0, 0]])  # class 2 never in the ground truth nor predicted
    assert class_bias.miou(cm) == pytest.approx((3 / 5 + 1 / 3) / 2)


def test_an_under_predicted_class_gets_the_offset_that_makes_every_pixel_right():
    # Class 1 always loses by 0.5 where it is the truth, class 0 wins by 1.5 where it is: all predicted 0.
    logits = torch.tensor([[0.0, -0.5]] * 4 + [[0.0, -1.5]] * 4)
    labels = np.array([1] * 4 + [0] * 4)
    assert class_bias.miou(np.array([[4, 0], [4, 0]])) == pytest.approx(0.25)
    offsets, history = class_bias.fit_offsets(logits, labels, np.arange(-2.0, 2.01, 0.25), sweeps=1)
    assert history == [pytest.approx(1.0)]
    assert 0.5 < offsets[1] - offsets[0] <= 1.5  # within the margin that separates the two groups (ties: class 0)


def test_offsets_stay_zero_when_nothing_beats_the_plain_argmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    offsets, history = class_bias.fit_offsets(logits, np.array([0, 1]), np.arange(-1.0, 1.01, 0.5), sweeps=2)
    assert np.all(offsets == 0) and history == [pytest.approx(1.0)] * 2
