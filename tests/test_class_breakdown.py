"""benchmarks/class_breakdown.py: one class's counts by true depth band and by recording, on tiny hand-made cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

from perception.conventions import CLASS_NAMES
from perception.data import ClipStore

class_breakdown = load_benchmark("class_breakdown")

VEHICLES = CLASS_NAMES.index("Vehicles")


def test_band_counts_split_hits_false_alarms_and_misses_by_true_depth():
    label = np.array([1, 1, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 1, 1])
    depth = np.array([5.0, 15.0, 15.0, 5.0, 50.0, 10.0])  # 10 m falls in the second band: bands are [a, b)
    counts = class_breakdown.band_counts(pred, label, depth, 1, (0.0, 10.0, 20.0, float("inf")))
    #                         0-10 10-20  20+
    assert counts.tolist() == [[1, 0, 1], [0, 2, 0], [0, 1, 0]]  # true positives, false positives, misses


@pytest.mark.parametrize(
    "counts, expected",
    [
        ((2, 1, 1), {"iou": 0.5, "precision": 2 / 3, "recall": 2 / 3, "pixels": 3}),
        ((0, 3, 0), {"iou": 0.0, "precision": 0.0, "recall": None, "pixels": 0}),
    ],
)
def test_scores_from_counts(counts, expected):
    got = class_breakdown.scores(np.array(counts))
    for key, value in expected.items():
        assert got[key] == (None if value is None else pytest.approx(value))


def test_shares_name_the_largest_counts_first_and_skip_empty_classes():
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    counts[CLASS_NAMES.index("Road")], counts[CLASS_NAMES.index("Static")] = 3, 1
    assert class_breakdown.shares(counts) == {"Road": 0.75, "Static": 0.25}


class Always(torch.nn.Module):
    """A stand-in model that predicts one class everywhere and carries a frame count as its state."""

    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls

    def forward(self, rgb: torch.Tensor, state: torch.Tensor | None) -> dict:
        b, t, _, h, w = rgb.shape
        logits = torch.zeros(b, t, len(CLASS_NAMES), h, w)
        logits[:, :, self.cls] = 1.0
        return {"seg_logits": logits, "state": (0 if state is None else state) + t}


def test_a_model_that_says_vehicles_everywhere_finds_every_vehicle_pixel(smoke_data: Path):
    clips = ClipStore(smoke_data).clips(split="val")
    labels = np.concatenate([clip.frame(i)["semantic"].ravel() for clip in clips for i in range(len(clip))])
    out = class_breakdown.dataset_breakdown(Always(VEHICLES), clips, VEHICLES, (0.0, 10.0, 40.0, float("inf")))
    vehicles = int((labels == VEHICLES).sum())
    assert out["overall"]["pixels"] == vehicles == sum(r["pixels"] for r in out["recordings"])
    assert sum(r["false_positives"] for r in out["recordings"]) == labels.size - vehicles
    assert sum(b["pixels"] for b in out["by_depth_m"].values()) == vehicles
    assert list(out["by_depth_m"]) == ["0-10 m", "10-40 m", "40+ m"]
    if vehicles:
        assert out["overall"]["recall"] == 1.0
    assert out["misses_predicted_as"] == {}
    top = max(set(labels[labels != VEHICLES].tolist()), key=lambda k: (labels == k).sum())
    assert next(iter(out["false_positives_are"])) == CLASS_NAMES[top]
