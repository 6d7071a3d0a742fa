"""Temporal augmentations: each is drawn once per window and applied to every frame of it.

A model that sees the same corruption on every frame of a window learns to be robust to it
without losing the frame-to-frame coherence it is trained to exploit. The same functions, at a
fixed strength, are the corruptions under which the evaluation reports metrics.

All functions take float images in [0, 1] shaped (T, 3, H, W) and a `torch.Generator`, so a run
is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

CORRUPTIONS = ("noise", "lighting_drift", "clutter")


@dataclass
class AugmentConfig:
    """Strengths of the temporal augmentations; the defaults are the seed project's."""

    noise_std: float = 0.05  # Gaussian pixel noise, fresh per frame
    brightness: float = 0.3  # colour jitter ranges (torchvision ColorJitter semantics)
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    lighting_drift: float = 0.3  # brightness change from the first to the last frame, up to +-this
    clutter_p: float = 0.25  # probability that a window gets occluding clutter
    clutter_max_blobs: int = 4
    clutter_max_size: float = 0.25  # blob side as a share of the image side


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def add_noise(frames: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian pixel noise (sensor noise), independent per pixel and frame."""
    noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype) * std
    return (frames + noise).clamp_(0.0, 1.0)


def color_jitter(frames: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One brightness / contrast / saturation / hue change, drawn once and applied to every frame."""
    b = _uniform(1 - config.brightness, 1 + config.brightness, generator)
    c = _uniform(1 - config.contrast, 1 + config.contrast, generator)
    s = _uniform(1 - config.saturation, 1 + config.saturation, generator)
    h = _uniform(-config.hue, config.hue, generator)
    order = torch.randperm(4, generator=generator).tolist()
    ops = [
        lambda x: TF.adjust_brightness(x, b),
        lambda x: TF.adjust_contrast(x, c),
        lambda x: TF.adjust_saturation(x, s),
        lambda x: TF.adjust_hue(x, h),
    ]
    for i in order:
        frames = ops[i](frames)
    return frames.clamp(0.0, 1.0)


def lighting_drift(frames: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness that changes smoothly over the window (a cloud, a tunnel), by up to `amount` at the end."""
    t = frames.shape[0]
    end = _uniform(-amount, amount, generator)
    gains = 1.0 + torch.linspace(0.0, end, t, dtype=frames.dtype).view(t, 1, 1, 1)
    return (frames * gains).clamp(0.0, 1.0)


def clutter(frames: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Opaque blobs at fixed image positions on every frame (dirt or drops on the lens)."""
    _, _, height, width = frames.shape
    out = frames.clone()
    count = int(torch.randint(1, config.clutter_max_blobs + 1, (), generator=generator))
    for _ in range(count):
        bh = max(1, int(height * _uniform(0.05, config.clutter_max_size, generator)))
        bw = max(1, int(width * _uniform(0.05, config.clutter_max_size, generator)))
        top = int(torch.randint(0, height - bh + 1, (), generator=generator))
        left = int(torch.randint(0, width - bw + 1, (), generator=generator))
        colour = torch.rand(3, generator=generator, dtype=frames.dtype).view(1, 3, 1, 1) * 0.5
        out[:, :, top : top + bh, left : left + bw] = colour
    return out


class TemporalAugment:
    """The training augmentation: colour jitter, lighting drift, clutter (with `clutter_p`), then noise."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment one window (T, 3, H, W) of float images in [0, 1]."""
        c = self.config
        frames = color_jitter(frames, c, generator)
        frames = lighting_drift(frames, c.lighting_drift, generator)
        if float(torch.rand((), generator=generator)) < c.clutter_p:
            frames = clutter(frames, c, generator)
        return add_noise(frames, c.noise_std, generator)


def corrupt(
    frames: torch.Tensor, kind: str, generator: torch.Generator, config: AugmentConfig | None = None
) -> torch.Tensor:
    """One evaluation corruption at full strength: "noise", "lighting_drift" (darkening by the full amount) or "clutter"."""
    c = config or AugmentConfig()
    if kind == "noise":
        return add_noise(frames, c.noise_std, generator)
    if kind == "lighting_drift":
        gains = 1.0 - torch.linspace(0.0, c.lighting_drift, frames.shape[0], dtype=frames.dtype).view(-1, 1, 1, 1)
        return (frames * gains).clamp(0.0, 1.0)
    if kind == "clutter":
        return clutter(frames, c, generator)
    raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")


def mirror_frames(
    batch: dict[str, torch.Tensor], generator: torch.Generator, p: float = 0.5
) -> dict[str, torch.Tensor]:
    """Mirror each item's RGB, labels and depth (every frame of its window) left to right with probability `p`
    (stages without a pose loss only: a mirrored window would need mirrored poses). The camera's principal point
    is the image centre, so the mirrored depth is still the depth of the mirrored image."""
    flip = torch.rand(batch["rgb"].shape[0], generator=generator) < p
    if not flip.any():
        return batch
    out = dict(batch)
    for key in ("rgb", "semantic", "depth"):
        x = batch[key].clone()
        x[flip] = x[flip].flip(-1)
        out[key] = x
    return out


def crop_box(item: dict[str, torch.Tensor], top: int, left: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """Cut the box (top, left, height, width) out of every frame of one item, at the recording's pixel scale.

    Unlike `crop_and_resize` nothing is rescaled: the focal length in pixels stays, so depth stays metric and
    only the principal point moves by the box's corner. Keys without image axes (poses) pass through."""
    rows, cols = slice(top, top + height), slice(left, left + width)
    out = {k: v[..., rows, cols] if k in ("rgb", "semantic", "depth") else v for k, v in item.items()}
    if "intrinsics" in item:
        k = item["intrinsics"].clone()
        k[0, 2] -= left
        k[1, 2] -= top
        out["intrinsics"] = k
    return out


def crop_and_resize(
    item: dict[str, torch.Tensor], top: int, left: int, height: int, width: int
) -> dict[str, torch.Tensor]:
    """Cut the box (top, left, height, width) out of one item's frames (T, ...) and scale it back to full size:
    RGB bilinear, labels and depth nearest. Depth is divided by the zoom, because an object seen `s` times
    larger through the same lens is `s` times closer."""
    full_h, full_w = item["semantic"].shape[-2:]
    out = crop_box(item, top, left, height, width)
    rgb = F.interpolate(out["rgb"].float(), size=(full_h, full_w), mode="bilinear", align_corners=False)
    out["rgb"] = rgb.round().clamp(0, 255).to(item["rgb"].dtype) if not item["rgb"].is_floating_point() else rgb
    labels = F.interpolate(out["semantic"][:, None].float(), size=(full_h, full_w), mode="nearest-exact")
    out["semantic"] = labels[:, 0].to(item["semantic"].dtype)
    depth = F.interpolate(out["depth"][:, None], size=(full_h, full_w), mode="nearest-exact")
    out["depth"] = depth[:, 0] * (width / full_w)
    if "intrinsics" in out:  # the same lens with a longer focal length, centred on the box
        k = out["intrinsics"]
        k[0, :] *= full_w / width
        k[1, :] *= full_h / height
    return out


def random_crops(
    batch: dict[str, torch.Tensor], generator: torch.Generator, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """One box of `size` (height, width) at a random place per item, the same box on every frame of its window:
    a network trained on crops of large frames sees objects at the large frames' pixel scale, at the cost per
    sample of the crop. Frames of exactly `size` pass unchanged; a box larger than the frames is a ValueError."""
    full_h, full_w = batch["semantic"].shape[-2:]
    height, width = size
    if (height, width) == (full_h, full_w):
        return batch
    if height > full_h or width > full_w:
        raise ValueError(f"crop {height}x{width} is larger than the recorded frames ({full_h}x{full_w})")
    items = []
    for i in range(batch["rgb"].shape[0]):
        top = int(torch.randint(0, full_h - height + 1, (), generator=generator))
        left = int(torch.randint(0, full_w - width + 1, (), generator=generator))
        items.append(crop_box({k: v[i] for k, v in batch.items()}, top, left, height, width))
    return {k: torch.stack([it[k] for it in items]) for k in batch}


def zoom_frames(
    batch: dict[str, torch.Tensor], generator: torch.Generator, max_zoom: float = 1.5, p: float = 0.5
) -> dict[str, torch.Tensor]:
    """Zoom each item (every frame of its window alike) in by a random factor in [1, `max_zoom`] around a random
    point with probability `p` (stages without a pose loss only: zooming changes the apparent ego-motion).
    Objects appear at more sizes than the recorded clips show them; the aspect ratio is kept."""
    if max_zoom <= 1.0:
        return batch
    count, full_h, full_w = batch["rgb"].shape[0], *batch["semantic"].shape[-2:]
    chosen = torch.rand(count, generator=generator) < p
    if not chosen.any():
        return batch
    items = []
    for i in range(count):
        item = {k: v[i] for k, v in batch.items()}
        if chosen[i]:
            width = round(full_w / _uniform(1.0, max_zoom, generator))
            height = round(full_h * width / full_w)
            top = int(torch.randint(0, full_h - height + 1, (), generator=generator))
            left = int(torch.randint(0, full_w - width + 1, (), generator=generator))
            item = crop_and_resize(item, top, left, height, width)
        items.append(item)
    return {k: torch.stack([it[k] for it in items]) for k in batch}


def hold_frames(batch: dict[str, torch.Tensor], generator: torch.Generator, p: float) -> dict[str, torch.Tensor]:
    """With probability `p` per window, the camera stops or starts at a random frame: the frames after it
    repeat it (a stop) or the frames before it repeat it (a start), with their labels, depth and poses, so the
    pairs of repeated frames stand (`rel_pose` the identity). A window with one frame, or `p` 0, passes unchanged.

    Training applies it after the per-frame noise, so a held frame repeats exactly, as a standing camera's frames
    do in the simulator. It shows the ego-motion filter standing pairs before any scene: an estimator that reads
    the look of a scene more than its change reports motion where it stands before a scene it has mostly seen
    while moving (a vehicle close ahead)."""
    count, t = batch["rgb"].shape[:2]
    chosen = torch.rand(count, generator=generator) < p
    if t < 2 or not chosen.any():
        return batch
    out = {k: v.clone() if k in ("rgb", "semantic", "depth", "pose", "rel_pose") else v for k, v in batch.items()}
    eye = torch.eye(4, dtype=batch["rel_pose"].dtype)
    for i in torch.nonzero(chosen).flatten().tolist():
        k = int(torch.randint(1, t, (), generator=generator))
        if bool(torch.rand((), generator=generator) < 0.5):  # a stop: frames k.. repeat frame k-1
            held, source = slice(k, t), k - 1
        else:  # a start: frames ..k-1 repeat frame k
            held, source = slice(0, k), k
        for key in ("rgb", "semantic", "depth", "pose"):
            if key in out:
                out[key][i, held] = batch[key][i, source]
        # the pairs (t-1, t) between equal frames stand: from k on after a stop, up to k before a start
        out["rel_pose"][i, held if held.start else slice(1, k + 1)] = eye
    return out
