"""Streaming inference: per-stream state, reset, any frame size, batched outputs, no autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception import TemporalPerception, build_model

SIZE = (64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("lite")


def frames(n: int, h: int = 45, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def make(model, **kwargs) -> TemporalPerception:
    return TemporalPerception(model, input_size=SIZE, **kwargs)


def test_step_outputs_and_shapes(model):
    tp = make(model)
    out = tp.step(frames(2))
    assert tp.num_streams == 2
    assert out.probs.shape == (2, 22, *SIZE) and out.labels.shape == (2, *SIZE)
    assert out.depth.shape == (2, *SIZE) and out.pose6.shape == (2, 6) and out.matrix.shape == (2, 4, 4)
    assert out.features.shape == (2, tp.feature_dim) and tp.feature_dim == 96 + 128
    assert torch.allclose(out.probs.sum(1), torch.ones(2, *SIZE), atol=1e-5)
    assert torch.equal(out.labels, out.probs.argmax(1))
    assert (out.depth >= 0.5).all() and (out.depth <= 1000).all()
    assert not out.probs.requires_grad and not out.features.requires_grad
    arrays = out.numpy()
    assert arrays["labels"].shape == (2, *SIZE) and isinstance(arrays["depth"], np.ndarray)


def test_first_frame_has_zero_motion_then_motion(model):
    tp = make(model)
    first = tp.step(frames(2, seed=1))
    assert torch.equal(first.pose6, torch.zeros(2, 6))
    assert torch.allclose(first.matrix, torch.eye(4).expand(2, 4, 4))
    second = tp.step(frames(2, seed=2))
    assert second.pose6.abs().sum() > 0


def test_reset_clears_only_that_stream(model):
    tp, fresh = make(model), make(model)
    tp.step(frames(2, seed=1))
    tp.step(frames(2, seed=2))
    tp.reset(1)
    x = frames(2, seed=3)
    out = tp.step(x)
    ref = fresh.step(x[1:])  # a stream that has seen only this frame
    assert torch.equal(out.pose6[1], torch.zeros(6)) and out.pose6[0].abs().sum() > 0
    assert torch.allclose(out.probs[1], ref.probs[0], atol=1e-5)
    assert torch.allclose(out.depth[1], ref.depth[0], rtol=1e-4)
    assert torch.allclose(out.features[1], ref.features[0], atol=1e-5)


def test_streams_are_independent(model):
    together, alone = make(model), make(model)
    seq = [frames(2, seed=s) for s in range(3)]
    for x in seq:
        both = together.step(x)
        one = alone.step(x[:1])
    assert torch.allclose(both.probs[0], one.probs[0], atol=1e-5)
    assert torch.allclose(both.pose6[0], one.pose6[0], atol=1e-6)


def test_accepts_tensors_single_frames_and_any_size(model):
    tp = make(model)
    assert tp.step(torch.from_numpy(frames(1, 100, 30))).labels.shape == (1, *SIZE)
    assert tp.step(frames(1, 64, 128)[0]).labels.shape == (1, *SIZE)
    with pytest.raises(ValueError, match="uint8"):
        tp.step(frames(1).astype(np.float32))
    with pytest.raises(ValueError, match="shaped"):
        tp.step(np.zeros((1, 3, 64, 128), np.uint8))


def test_batchnorm_folding_keeps_outputs(model):
    x = frames(1)
    a = make(model, fuse=True).step(x)
    b = make(model, fuse=False, channels_last=False).step(x)
    assert torch.allclose(a.probs, b.probs, atol=1e-4)
    assert torch.allclose(a.depth, b.depth, rtol=1e-3)


def test_changing_stream_count_restarts_and_reset_all(model):
    tp = make(model)
    tp.step(frames(2))
    out = tp.step(frames(3))
    assert tp.num_streams == 3 and torch.equal(out.pose6, torch.zeros(3, 6))
    tp.reset()
    assert torch.equal(tp.step(frames(3)).pose6, torch.zeros(3, 6))
    with pytest.raises(IndexError):
        tp.reset(5)


def test_from_preset():
    tp = TemporalPerception.from_preset("lite", input_size=SIZE)
    assert tp.input_size == SIZE and tp.class_names[7] == "Road"
    assert tp.step(frames(1)).probs.shape == (1, 22, *SIZE)


@pytest.mark.slow
def test_full_preset_streams_on_small_frames():
    """The seed-sized pipeline (1.3 GB of float32 weights) runs end to end; slow on CPU, so opt-in."""
    tp = TemporalPerception.from_preset("full", input_size=SIZE)
    tp.step(frames(1))
    out = tp.step(frames(1, seed=1))
    assert out.probs.shape == (1, 22, *SIZE) and out.features.shape == (1, 2048 + 128)
    assert torch.isfinite(out.depth).all() and out.pose6.abs().sum() > 0


def test_stepping_a_subset_of_streams_leaves_the_others_untouched(model):
    f1, f2, g = frames(3, seed=1), frames(3, seed=2), frames(1, seed=3)
    vec = make(model)
    vec.step(f1)
    vec.reset(1)
    first = vec.step(g, streams=[1])  # stream 1 restarts on g; streams 0 and 2 do not move
    out = vec.step(f2)
    # stream 0 as if nothing happened in between
    alone = make(model)
    alone.step(f1[:1])
    ref0 = alone.step(f2[:1])
    # stream 1 as a fresh stream that saw g, then f2[1]
    fresh = make(model)
    ref_first = fresh.step(g)
    ref1 = fresh.step(f2[1:2])
    assert torch.allclose(first.depth, ref_first.depth, atol=1e-4) and not first.pose6.any()
    assert torch.allclose(out.depth[0], ref0.depth[0], atol=1e-4)
    assert torch.allclose(out.pose6[0], ref0.pose6[0], atol=1e-5)
    assert torch.allclose(out.depth[1], ref1.depth[0], atol=1e-4)
    assert torch.allclose(out.pose6[1], ref1.pose6[0], atol=1e-5)
    with pytest.raises(ValueError, match="distinct streams"):
        vec.step(frames(2), streams=[0, 0])


@pytest.mark.parametrize("n_in, n_up, n_out", [(2, 4, 2), (3, 7, 2), (16, 128, 40), (32, 256, 80), (4, 4, 4)])
def test_area_resample_matrix_equals_upsampling_then_pooling(n_in, n_up, n_out):
    from perception.streaming import area_resample_matrix

    x = torch.rand(5, n_in, dtype=torch.float64)
    up = torch.nn.functional.interpolate(x[:, None], size=n_up, mode="linear", align_corners=False)
    expected = torch.nn.functional.adaptive_avg_pool1d(up, n_out)[:, 0]
    a = area_resample_matrix(n_in, n_up, n_out)
    assert a.shape == (n_out, n_in)
    torch.testing.assert_close(x.float() @ a.T, expected.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.sum(1), torch.ones(n_out), atol=1e-6, rtol=0)  # rows are weighted averages


def test_area_resample_matrix_hand_case():
    from perception.streaming import area_resample_matrix

    # 2 -> 4 samples: [a, .75a+.25b, .25a+.75b, b]; pooled pairwise to 2: [.875a+.125b, .125a+.875b]
    torch.testing.assert_close(area_resample_matrix(2, 4, 2), torch.tensor([[0.875, 0.125], [0.125, 0.875]]))


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_pooled_probs_equal_pooling_the_full_size_probabilities(model, engine):
    tp = make(model, engine=engine)
    out = tp.step(frames(2))
    assert out.seg_probs.shape[:2] == (2, 22) and out.seg_probs.shape[-1] < SIZE[1]  # the head's resolution
    groups = torch.rand(6, 22)
    full = torch.nn.functional.adaptive_avg_pool2d(torch.einsum("gc,nchw->nghw", groups, out.probs), (10, 20))
    torch.testing.assert_close(out.pooled_probs((10, 20), groups), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        out.pooled_probs((10, 20)), torch.nn.functional.adaptive_avg_pool2d(out.probs, (10, 20)), atol=1e-5, rtol=1e-4
    )
