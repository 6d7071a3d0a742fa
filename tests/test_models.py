"""Models: preset sizes (counted on the meta device), shapes, log-depth, gradients through time, batch size 1."""

from __future__ import annotations

import math
import re

import pytest
import torch

from perception.conventions import pose6_to_matrix
from perception.models import (
    MAX_DEPTH_M,
    MIN_DEPTH_M,
    PipelineState,
    SkipDecoder,
    build_depth_model,
    build_ego_motion_filter,
    build_geometry_filter,
    build_model,
    build_segmentation_model,
    count_parameters,
    get_preset,
    log_depth_to_metres,
    parse_overrides,
)

H, W = 64, 128  # small inputs keep the CPU tests fast


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return build_model("lite")


@pytest.mark.parametrize(
    "builder, expected_m",
    [
        (lambda: build_segmentation_model("full", device="meta"), 39.6),
        (lambda: build_depth_model("full", device="meta"), 30.7),
        (lambda: build_geometry_filter("full", device="meta"), 273.4),
        (lambda: build_ego_motion_filter("full", device="meta"), 40.5),
        (lambda: build_model("full", device="meta"), 313.9),
    ],
    ids=["segmentation", "depth", "geometry_filter", "ego_motion_filter", "pipeline"],
)
def test_full_preset_matches_seed_sizes(builder, expected_m):
    n = count_parameters(builder()) / 1e6
    assert abs(n - expected_m) / expected_m < 0.02, f"{n:.2f}M vs the seed's {expected_m}M"


def test_full_preset_bottleneck_is_2048x32x64_at_256x512():
    model = build_model("full", device="meta")
    assert model.geometry_filter.convgru.hidden_channels == 2048
    out = model(torch.empty(1, 2, 3, 256, 512, device="meta"))
    assert out["embeddings"].shape == (1, 2, 2048, 32, 64)
    assert out["state"].geometry.shape == (1, 2048, 32, 64)
    assert out["seg_logits"].shape == (1, 2, 22, 256, 512)
    assert out["pose6"].shape == (1, 2, 6)


def test_pipeline_attributes_and_lite_is_small(lite):
    assert hasattr(lite, "geometry_filter") and hasattr(lite, "ego_motion_filter")
    assert count_parameters(lite) < 10e6
    assert lite.config.name == "lite" and lite.num_classes == 22
    assert lite.feature_dim == lite.geometry_filter.hidden_channels + 128


def test_geometry_filter_window_shapes_and_depth_scale(lite):
    lite.eval()
    x = torch.randn(2, 3, 3, H, W)
    with torch.no_grad():
        out = lite.geometry_filter(x)
    assert out["seg_logits"].shape == (2, 3, 22, H, W)
    assert out["log_depth"].shape == out["depth"].shape == (2, 3, 1, H, W)
    assert out["embeddings"].shape[:3] == (2, 3, lite.geometry_filter.motion_channels)
    assert torch.isfinite(out["log_depth"]).all()
    assert (out["depth"] >= MIN_DEPTH_M).all() and (out["depth"] <= MAX_DEPTH_M).all()


def test_channels_last_encoding_keeps_the_values(lite):
    """`encode` runs the backbone channels-last for speed; the embedding equals the one from contiguous frames."""
    gf = lite.geometry_filter.eval()
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        emb, feats = gf.encode(x)
        plain = gf.proj(gf.backbone(x.contiguous())["out"])
    assert feats["out"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(emb, plain, rtol=1e-4, atol=1e-5)


def test_log_depth_has_no_final_relu_and_clamps():
    assert isinstance(build_depth_model("lite").depth_decoder.head, torch.nn.Conv2d)
    d = log_depth_to_metres(torch.tensor([-10.0, 0.0, math.log(20.0), 50.0]))
    assert torch.allclose(d, torch.tensor([MIN_DEPTH_M, 1.0, 20.0, MAX_DEPTH_M]))


def test_ego_motion_shapes_and_matrix_from_conventions(lite):
    emb = torch.randn(2, 4, lite.geometry_filter.motion_channels, 4, 8)
    out = lite.ego_motion_filter(emb)
    assert out["pose6"].shape == (2, 3, 6) and out["matrix"].shape == (2, 3, 4, 4)
    assert out["state"].shape == (2, 128)
    assert torch.allclose(out["matrix"], pose6_to_matrix(out["pose6"]))


def test_no_batchnorm1d_and_batch_size_one_trains(lite):
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in lite.modules())
    lite.train()
    out = lite(torch.randn(1, 2, 3, H, W))
    loss = out["seg_logits"].mean() + out["log_depth"].mean() + out["pose6"].abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in lite.ego_motion_filter.parameters())
    lite.zero_grad(set_to_none=True)


def test_gradients_flow_through_recurrent_states_within_a_window(lite):
    lite.train()
    x = torch.randn(1, 3, 3, H, W, requires_grad=True)
    out = lite.geometry_filter(x)
    out["seg_logits"][:, -1].sum().backward()  # loss on the last frame only
    assert x.grad[:, 0].abs().sum() > 0, "no gradient reached frame 0 through the ConvGRU state"
    emb = torch.randn(1, 3, lite.geometry_filter.motion_channels, 4, 8, requires_grad=True)
    lite.ego_motion_filter(emb)["pose6"][:, -1].sum().backward()  # pair (1, 2) only
    assert emb.grad[:, 0].abs().sum() > 0, "no gradient reached pair (0, 1) through the GRU state"
    lite.zero_grad(set_to_none=True)


def test_window_split_with_carried_state_equals_whole_window(lite):
    lite.eval()
    x = torch.randn(1, 4, 3, H, W)
    with torch.no_grad():
        whole = lite(x)
        first = lite(x[:, :2])
        second = lite(x[:, 2:], first["state"].detach())
        assert whole["pose6"].shape == (1, 4, 6)
        assert torch.equal(whole["pose6"][:, 0], torch.zeros(1, 6))
        assert torch.allclose(whole["seg_logits"][:, 2:], second["seg_logits"], atol=1e-4)
        assert torch.allclose(whole["pose6"][:, 2:], second["pose6"], atol=1e-5)


def test_step_by_step_equals_window_forward(lite):
    lite.eval()
    x = torch.randn(2, 3, 3, H, W)
    with torch.no_grad():
        whole = lite(x)
        state = PipelineState()
        for t in range(3):
            out = lite.step(x[:, t], state)
            state = out["state"]
            assert torch.allclose(out["seg_logits"], whole["seg_logits"][:, t], atol=1e-4)
            assert torch.allclose(out["log_depth"], whole["log_depth"][:, t], atol=1e-4)
            assert torch.allclose(out["pose6"], whole["pose6"][:, t], atol=1e-5)
        assert out["features"].shape == (2, lite.feature_dim)


def test_single_frame_baselines():
    seg = build_segmentation_model("lite").eval()
    depth = build_depth_model("lite").eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        assert seg(x).shape == (1, 22, H, W)
        out = depth(x)
    assert out["depth"].shape == (1, 1, H, W)
    # submodule names match the temporal model's, so stage 1/2 checkpoints load into it
    geo_keys = set(build_geometry_filter("lite").state_dict())
    assert set(seg.state_dict()) <= geo_keys and set(depth.state_dict()) <= geo_keys


@pytest.mark.parametrize("head, stride", [("lraspp", 8), ("unet", 2), ("deeplabv3", 16)])
def test_segmentation_heads_resolution(head, stride):
    """Logits come at the head's own stride without `out_size` (lite's unet reads the stride-2 skip), at the input size with it."""
    model = build_geometry_filter("lite", seg_head=head).eval()
    with torch.no_grad():
        emb, feats = model.encode(torch.randn(1, 3, H, W))
        h = model.convgru(emb, None)
        assert model.seg_head(h, feats, None).shape == (1, 22, H // stride, W // stride)
        assert model.seg_head(h, feats, (H, W)).shape == (1, 22, H, W)


def test_segmentation_decoder_reads_a_finer_skip_than_the_depth_decoder_unless_told_otherwise():
    """lite's segmentation decoder gives class logits at stride 2 (`seg_skip_names`) while depth keeps its own
    decoder; without its own skips it shares the depth decoder's layout (stride 4), depth's weights unchanged."""
    model = build_geometry_filter("lite").eval()
    shared = build_geometry_filter("lite", seg_skip_names=None, seg_decoder_widths=None).eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        out, out_shared = model.step(x, None, upsample_seg=False), shared.step(x, None, upsample_seg=False)
    assert out["seg_logits"].shape == (1, 22, H // 2, W // 2) and out["depth"].shape == (1, 1, H, W)
    assert out_shared["seg_logits"].shape == (1, 22, H // 4, W // 4) and out_shared["depth"].shape == (1, 1, H, W)
    depth = {k: v.shape for k, v in model.state_dict().items() if k.startswith("depth_decoder.")}
    assert depth == {k: v.shape for k, v in shared.state_dict().items() if k.startswith("depth_decoder.")}
    seg = build_segmentation_model("lite")
    assert set(seg.state_dict()) <= set(model.state_dict())  # seg-stage checkpoints still load into it


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["seg_skip_names=s8,s4,s2"], {"seg_skip_names": ("s8", "s4", "s2")}),
        (["seg_decoder_widths=64, 48,32,16"], {"seg_decoder_widths": (64, 48, 32, 16)}),
        (["hidden_channels=64", "hidden_channels=32"], {"hidden_channels": 32}),
        (["motion_detail=none", "motion_difference=false"], {"motion_detail": None, "motion_difference": False}),
        (["embed_channels=None"], {"embed_channels": None}),
    ],
)
def test_parse_overrides(pairs, expected):
    assert parse_overrides(pairs) == expected


@pytest.mark.parametrize(
    ("pairs", "needle"),
    [
        (["hidden_channels"], "expected FIELD=VALUE"),
        (["name=big"], "expected FIELD=VALUE"),
        (["width=3"], "'width=3': expected FIELD=VALUE with FIELD one of input_size, backbone"),
        (["gru_kernel=3.5"], "'gru_kernel=3.5': expected int, got '3.5'"),
        (["motion_difference=yes"], "expected true or false"),
    ],
)
def test_parse_overrides_names_the_bad_pair(pairs, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        parse_overrides(pairs)


def test_skip_decoder_checks_widths():
    with pytest.raises(ValueError, match="one width per skip plus one"):
        SkipDecoder(96, [40, 24], (64, 32), out_channels=22)


def test_preset_overrides_and_unknown_preset():
    assert get_preset("lite", hidden_channels=64).hidden_channels == 64
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")


def test_a_few_steps_fit_depth_and_pose():
    """The heads learn (no dead ReLU, pose head not stuck): losses fall on one fixed window."""
    torch.manual_seed(0)
    model = build_model("lite").train()
    rgb = torch.randn(1, 3, 3, H, W)
    log_depth = torch.log(60.0 / (torch.arange(H).float() + 2)).view(1, 1, 1, H, 1).expand(1, 3, 1, H, W)
    pose = torch.tensor([1.0, 0.1, 0.0, 0.0, 0.0, 0.05])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    losses = []
    for _ in range(15):
        out = model(rgb)
        d = (out["log_depth"] - log_depth).abs().mean()
        p = (out["pose6"][:, 1:] - pose).abs().mean()
        opt.zero_grad()
        (d + p).backward()
        opt.step()
        losses.append((d.item(), p.item()))
    assert losses[-1][0] < 0.7 * losses[0][0] and losses[-1][1] < 0.5 * losses[0][1], losses


def test_step_masked_names_an_incomplete_state(lite):
    x = torch.zeros(1, 3, 32, 64)
    with pytest.raises(ValueError, match="complete PipelineState"):
        lite.step_masked(x, PipelineState(), torch.tensor([True]))


@pytest.mark.parametrize("difference, first_half", [(True, [2.0, -1.0]), (False, [1.0, 3.0])])
def test_ego_motion_pair_is_change_and_current_or_previous_and_current(difference, first_half):
    """Embeddings (1, 2 channels) of frames t-1 = (1, 3) and t = (3, 2): (change, current) = (2, -1, 3, 2) with
    `difference`, else (previous, current) = (1, 3, 3, 2); a standing pair's change is exactly zero."""
    ego = build_ego_motion_filter("lite", motion_difference=difference, motion_detail=None, embed_channels=2)
    prev, cur = torch.tensor([[1.0, 3.0]]), torch.tensor([[3.0, 2.0]])
    assert ego.pair(prev, cur, dim=1).tolist() == [[*first_half, 3.0, 2.0]]
    if difference:
        assert ego.pair(cur, cur, dim=1)[:, :2].abs().sum() == 0


def test_motion_embedding_folds_the_detail_feature_onto_the_embedding_grid(lite):
    """lite pairs its 96-channel embedding at stride 16 with the 40-channel stride-8 features folded 2x2 into
    channels: 96 + 4 x 40 = 256 channels, the folded part exactly `pixel_unshuffle` of the stride-8 map."""
    g = lite.geometry_filter
    assert (g.embed_channels, g.motion_channels) == (96, 256)
    with torch.no_grad():
        emb, feats = g.encode(torch.randn(1, 3, H, W))
        motion = g.motion_embedding(emb, feats)
    assert torch.equal(motion[:, :96], emb)
    assert torch.equal(motion[:, 96:], torch.nn.functional.pixel_unshuffle(feats["s8"], 2))
    assert lite.ego_motion_filter.motion_estimator.convs[0].in_channels == 2 * 256


@pytest.mark.parametrize("detail", ["out", "s16", "x8"])
def test_motion_detail_must_be_a_finer_backbone_feature(detail):
    with pytest.raises(ValueError, match=f"motion_detail '{detail}' is not a backbone feature"):
        build_geometry_filter("lite", motion_detail=detail, device="meta")
