import pytest
import torch

from perception.data import (
    AugmentConfig,
    TemporalAugment,
    corrupt,
    hold_frames,
    mirror_frames,
    random_crops,
    zoom_frames,
)
from perception.data.augment import clutter, color_jitter, crop_and_resize, crop_box, lighting_drift


def window(t=4, h=16, w=24, seed=0):
    return torch.rand((t, 3, h, w), generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_color_jitter_changes_pixels_identically_on_every_frame():
    frames = window(t=1).expand(3, -1, -1, -1).clone()  # three identical frames
    out = color_jitter(frames, AugmentConfig(), gen())
    assert (out - frames).abs().mean() > 0.01  # not a no-op
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # consistent across the window


def test_lighting_drift_ramps_from_the_first_frame():
    frames = torch.full((5, 3, 2, 2), 0.5)
    out = lighting_drift(frames, 0.3, gen(1))
    gains = out[:, 0, 0, 0] / 0.5
    assert gains[0] == pytest.approx(1.0)
    steps = gains[1:] - gains[:-1]
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-6) and abs(gains[-1] - 1) <= 0.3 + 1e-6


def test_clutter_occludes_the_same_pixels_in_every_frame():
    frames = window()
    out = clutter(frames, AugmentConfig(), gen(2))
    changed = (out != frames).any(dim=1)  # (T, H, W)
    assert changed[0].any()
    assert all(torch.equal(out[0][:, changed[0]], out[t][:, changed[0]]) for t in range(4))


def test_clutter_probability_is_honoured():
    aug = TemporalAugment(
        AugmentConfig(noise_std=0.0, brightness=0, contrast=0, saturation=0, hue=0, lighting_drift=0.0, clutter_p=0.25)
    )
    frames = torch.full((2, 3, 8, 8), 0.9)
    g = gen(3)
    hits = sum(bool((aug(frames, g) != frames).any()) for _ in range(400))
    assert 70 <= hits <= 130  # 100 expected; binomial sd ~8.7


def test_augment_is_reproducible_and_stays_in_range():
    frames = window()
    a = TemporalAugment()(frames, gen(5))
    b = TemporalAugment()(frames, gen(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, TemporalAugment()(frames, gen(6)))


def test_corruptions_by_name():
    frames = torch.full((3, 3, 4, 4), 0.5)
    assert corrupt(frames, "lighting_drift", gen())[-1].max() == pytest.approx(0.5 * 0.7)
    assert (corrupt(frames, "noise", gen()) - frames).std() == pytest.approx(0.05, rel=0.3)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(frames, "fog", gen())


def test_mirror_frames_flips_image_labels_and_depth_together() -> None:
    """Item 0 mirrored (p=1), nothing mirrored at p=0; poses untouched; the input batch is not modified."""
    rgb = torch.arange(2 * 1 * 3 * 2 * 3, dtype=torch.uint8).view(2, 1, 3, 2, 3)
    batch = {
        "rgb": rgb,
        "semantic": torch.tensor([[[[1, 2, 3], [4, 5, 6]]]]).repeat(2, 1, 1, 1),
        "depth": torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]]).repeat(2, 1, 1, 1),
        "rel_pose": torch.eye(4).expand(2, 1, 4, 4),
    }
    out = mirror_frames(batch, torch.Generator().manual_seed(0), p=1.0)
    assert out["semantic"][0, 0].tolist() == [[3, 2, 1], [6, 5, 4]]
    assert out["depth"][1, 0].tolist() == [[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]
    assert out["rgb"][0, 0, 2, 1].tolist() == rgb[0, 0, 2, 1].flip(0).tolist()
    assert out["rel_pose"] is batch["rel_pose"]
    assert batch["semantic"][0, 0, 0].tolist() == [1, 2, 3]
    same = mirror_frames(batch, torch.Generator().manual_seed(0), p=0.0)
    assert all(torch.equal(same[k], batch[k]) for k in batch)


def test_crop_and_resize_doubles_a_corner_and_halves_its_depth() -> None:
    """The top-left 2x2 of a 4x4 frame scaled x2: each label covers 2x2 pixels, depth / 2, focal length x 2."""
    k = torch.tensor([[4.0, 0.0, 2.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]])
    item = {
        "rgb": torch.zeros((1, 3, 4, 4), dtype=torch.uint8),
        "semantic": torch.arange(16).view(1, 4, 4),
        "depth": torch.full((1, 4, 4), 10.0),
        "intrinsics": k,
    }
    out = crop_and_resize(item, top=0, left=0, height=2, width=2)
    assert out["semantic"][0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [4, 4, 5, 5], [4, 4, 5, 5]]
    assert out["depth"].unique().tolist() == [5.0]
    assert out["rgb"].dtype == torch.uint8 and out["rgb"].shape == (1, 3, 4, 4)
    # the principal point (2, 2) is the box's bottom-right corner, so it moves to the new image's corner (4, 4)
    assert out["intrinsics"].tolist() == [[8.0, 0.0, 4.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]]
    assert item["depth"].unique().tolist() == [10.0]  # the input is not modified


def test_crop_box_keeps_the_scale_and_moves_the_principal_point() -> None:
    """Rows 1-2, columns 2-4 of a 4x6 frame: the same pixels and depths, the focal length kept, the principal
    point (3, 2) moved by the box's corner (2, 1); poses pass through."""
    k = torch.tensor([[3.0, 0.0, 3.0], [0.0, 3.0, 2.0], [0.0, 0.0, 1.0]])
    item = {
        "rgb": torch.arange(2 * 3 * 24, dtype=torch.uint8).view(2, 3, 4, 6),
        "semantic": torch.arange(24).view(1, 4, 6).repeat(2, 1, 1),
        "depth": torch.arange(24, dtype=torch.float32).view(1, 4, 6).repeat(2, 1, 1),
        "rel_pose": torch.eye(4).repeat(2, 1, 1),
        "intrinsics": k,
    }
    out = crop_box(item, top=1, left=2, height=2, width=3)
    assert out["semantic"][1].tolist() == [[8, 9, 10], [14, 15, 16]]
    assert out["depth"][0].tolist() == [[8.0, 9.0, 10.0], [14.0, 15.0, 16.0]]
    assert torch.equal(out["rgb"], item["rgb"][..., 1:3, 2:5])
    assert out["intrinsics"].tolist() == [[3.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]]
    assert out["rel_pose"] is item["rel_pose"] and item["intrinsics"][0, 2] == 3.0  # the input is not modified


def test_random_crops_cut_one_box_per_window() -> None:
    """Every item gets a box of the asked size inside the frame, the same box on each of its frames."""
    h, w = 8, 16
    pixel = torch.arange(h * w).view(h, w)  # each pixel's own index, so a crop shows where it was cut
    batch = {
        "rgb": torch.zeros((5, 3, 3, h, w), dtype=torch.uint8),
        "semantic": pixel.expand(5, 3, h, w).clone(),
        "depth": torch.ones((5, 3, h, w)),
        "intrinsics": torch.tensor([[8.0, 0.0, 8.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]]).expand(5, 3, 3).clone(),
    }
    out = random_crops(batch, torch.Generator().manual_seed(0), (4, 6))
    assert out["semantic"].shape == (5, 3, 4, 6) and out["rgb"].shape == (5, 3, 3, 4, 6)
    corners = out["semantic"][:, :, 0, 0]
    assert (corners == corners[:, :1]).all()  # one box per window
    top, left = corners[:, 0] // w, corners[:, 0] % w
    assert (top <= h - 4).all() and (left <= w - 6).all() and len(set(corners[:, 0].tolist())) > 1
    for i in range(5):  # a whole box, and intrinsics that follow it
        assert torch.equal(out["semantic"][i, 0], pixel[top[i] : top[i] + 4, left[i] : left[i] + 6])
        assert out["intrinsics"][i, :2, 2].tolist() == [8.0 - left[i].item(), 4.0 - top[i].item()]
    assert random_crops(batch, torch.Generator(), (h, w)) is batch
    with pytest.raises(ValueError, match="crop 4x32 is larger than the recorded frames"):
        random_crops(batch, torch.Generator(), (4, 32))


def test_zoom_frames_keeps_shapes_and_label_set() -> None:
    batch = {
        "rgb": torch.randint(0, 255, (3, 1, 3, 8, 16), dtype=torch.uint8),
        "semantic": torch.randint(0, 5, (3, 1, 8, 16)),
        "depth": torch.full((3, 1, 8, 16), 20.0),
    }
    out = zoom_frames(batch, torch.Generator().manual_seed(0), max_zoom=2.0, p=1.0)
    assert all(out[k].shape == batch[k].shape and out[k].dtype == batch[k].dtype for k in batch)
    assert set(out["semantic"].unique().tolist()) <= set(batch["semantic"].unique().tolist())
    zoom = 20.0 / out["depth"][:, 0, 0, 0]
    assert ((zoom >= 1.0) & (zoom <= 2.0)).all() and (zoom > 1.0).any()
    assert zoom_frames(batch, torch.Generator().manual_seed(0), max_zoom=2.0, p=0.0) is batch
    assert zoom_frames(batch, torch.Generator().manual_seed(0), max_zoom=1.0, p=1.0) is batch


def moving_windows(count=2, t=5):
    """Windows whose frames, labels, depth and poses all differ from frame to frame: frame j of item i shows
    the value 10 i + j, and its camera stands at x = j metres."""
    value = (10 * torch.arange(count)[:, None] + torch.arange(t)[None]).view(count, t, 1, 1)
    pose = torch.eye(4).repeat(count, t, 1, 1)
    pose[..., 0, 3] = torch.arange(t, dtype=torch.float32)
    rel = torch.eye(4).repeat(count, t, 1, 1)
    rel[:, 1:, 0, 3] = 1.0
    return {
        "rgb": value[:, :, None].expand(count, t, 3, 2, 2).to(torch.uint8),
        "semantic": value.expand(count, t, 2, 2).clone(),
        "depth": value.expand(count, t, 2, 2).float(),
        "pose": pose,
        "rel_pose": rel,
        "intrinsics": torch.eye(3).repeat(count, 1, 1),
    }


@pytest.mark.parametrize("seed", range(8))
def test_hold_frames_stands_exactly_the_pairs_between_repeated_frames(seed):
    """p=1: every window stops or starts once; a pair stands (identity `rel_pose`) exactly where its two frames
    are one repeated frame, and labels, depth and poses repeat with the image. The input is not modified."""
    batch = moving_windows()
    out = hold_frames(batch, gen(seed), p=1.0)
    for i in range(2):
        shown = out["semantic"][i, :, 0, 0].tolist()  # which recorded frame each frame now is
        assert shown != list(range(10 * i, 10 * i + 5))  # held somewhere
        repeated = [shown[j] == shown[j - 1] for j in range(1, 5)]
        runs = "".join("h" if r else "m" for r in repeated)
        assert runs.strip("m") == "h" * runs.count("h") and (runs.startswith("h") or runs.endswith("h"))
        for j in range(1, 5):
            assert torch.equal(out["rel_pose"][i, j], torch.eye(4)) == repeated[j - 1]
        assert out["rgb"][i, :, 0, 0, 0].tolist() == shown
        assert out["depth"][i, :, 0, 0].tolist() == shown
        assert out["pose"][i, :, 0, 3].tolist() == [float(v - 10 * i) for v in shown]
    assert batch["semantic"][1, :, 0, 0].tolist() == [10, 11, 12, 13, 14]
    assert torch.equal(out["intrinsics"], batch["intrinsics"])


@pytest.mark.parametrize("p, t", [(0.0, 5), (1.0, 1)])
def test_hold_frames_passes_windows_unchanged_at_p_0_or_one_frame(p, t):
    batch = moving_windows(t=t)
    out = hold_frames(batch, gen(), p=p)
    assert all(torch.equal(out[k], batch[k]) for k in batch)
