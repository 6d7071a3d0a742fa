"""Presets (`full`, `lite`) and torchvision-style builders for every model of the stack.

- `full` reproduces the seed's sizes: DeepLabv3-ResNet50 at output stride 8, a 2048-channel 3x3
  ConvGRU on the 32x64 bottleneck of a 256x512 input, a depth decoder with skips, the seed's
  MotionEstimator (4096 -> 1024 -> 256 -> 128).
- `lite` is built for real-time CPU streaming at 128x256: MobileNetV3-Large (dilated, output
  stride 16, reduced tail), a 1x1 projection to a 96-channel ConvGRU, two light decoders
  (`SkipDecoder`), one for log-depth through the stride-8 and stride-4 skips (at H/4, upsampled) and
  one for class logits through those and the stride-2 skip (at H/2, upsampled: road lines, poles
  and signs are a pixel or two wide at this size), and an ego-motion filter that pairs frames as
  (change, current) of the narrow embedding and the stride-8 features folded onto its grid (its last
  conv keeps stride 1 so BatchNorm2d sees more than one value per channel at batch size 1 on small
  inputs). The segmentation decoder replaced torchvision's LR-ASPP head (stride-8 logits), under
  which classes a few pixels wide scored near zero IoU. About 3.3M parameters and 0.91 GFLOPs per
  128x256 frame.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from perception.conventions import NUM_CLASSES

from .decoder import SkipSpec
from .depth import DepthEstimationModel
from .ego_motion import EgoMotionFilter
from .geometry_filter import GeometryFilter
from .pipeline import PerceptionPipeline
from .segmentation import SegmentationModel


@dataclass(frozen=True)
class PresetConfig:
    """Everything that fixes a model's architecture (stored in a weights folder's config.json)."""

    name: str
    input_size: tuple[int, int]  # (H, W) the streaming pipeline resizes camera frames to
    backbone: str  # resnet50 | mobilenet_v3_large | mobilenet_v3_small, MobileNets optionally + _reduced_tail
    seg_head: str  # deeplabv3 | lraspp | unet (unet: a decoder through `skip_names`, like the depth head's)
    embed_channels: int | None = None  # 1x1 projection width after the backbone; None keeps the backbone's
    hidden_channels: int | None = None  # ConvGRU width; None = embed_channels
    gru_kernel: int = 3
    skip_names: tuple[str, ...] = ("s4", "s2")  # depth (and unet segmentation) decoder skips, coarse to fine
    decoder_widths: tuple[int, ...] = (256, 256, 128)
    # The unet segmentation decoder's own skips and widths, where they differ from the depth decoder's (None: the
    # same): e.g. one skip finer than depth's for class logits at stride 2, where thin classes are a pixel wide.
    seg_skip_names: tuple[str, ...] | None = None
    seg_decoder_widths: tuple[int, ...] | None = None
    decoder_reduce_kernel: int = 3
    decoder_convs_per_stage: int = 2
    seg_inter_channels: int = 128  # LR-ASPP inner width
    motion_channels: tuple[int, ...] = (1024, 256, 128)
    motion_strides: tuple[int, ...] = (2, 2, 2)
    ego_gru_hidden: int = 128
    # The ego-motion filter's input. The defaults are the original design's, which weights saved before these
    # fields existed were trained with: the pair (previous, current) of embeddings alone.
    motion_difference: bool = False  # pair the embeddings as (change, current): `EgoMotionFilter.pair`
    motion_detail: str | None = None  # a finer backbone feature ("s8") the filter reads beside the embedding

    def geometry_filter_kwargs(self) -> dict[str, Any]:
        """The `GeometryFilter` arguments this preset fixes (all but `num_classes`)."""
        names = (
            "backbone",
            "seg_head",
            "embed_channels",
            "hidden_channels",
            "gru_kernel",
            "skip_names",
            "decoder_widths",
            "decoder_reduce_kernel",
            "seg_inter_channels",
            "decoder_convs_per_stage",
            "motion_detail",
        )
        return {n: getattr(self, n) for n in names} | {"seg_skips": self.seg_skips()}

    def seg_skips(self) -> SkipSpec:
        """The unet segmentation decoder's skips: its own where given, else the depth decoder's."""
        return SkipSpec(
            self.seg_skip_names or self.skip_names,
            self.seg_decoder_widths or self.decoder_widths,
            self.decoder_reduce_kernel,
            self.decoder_convs_per_stage,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PresetConfig:
        """Inverse of `to_dict`; unknown keys raise so a newer config is not silently misread."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown preset config keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


PRESETS: dict[str, PresetConfig] = {
    "full": PresetConfig(name="full", input_size=(256, 512), backbone="resnet50", seg_head="deeplabv3"),
    "lite": PresetConfig(
        name="lite",
        input_size=(128, 256),
        backbone="mobilenet_v3_large_reduced_tail",
        seg_head="unet",
        embed_channels=96,
        hidden_channels=96,
        skip_names=("s8", "s4"),
        decoder_widths=(64, 48, 32),
        seg_skip_names=("s8", "s4", "s2"),
        seg_decoder_widths=(64, 48, 32, 16),
        decoder_reduce_kernel=1,
        decoder_convs_per_stage=1,
        motion_channels=(128, 128, 128),
        motion_strides=(2, 2, 1),
        motion_difference=True,
        motion_detail="s8",
    ),
}


def get_preset(preset: str | PresetConfig, **overrides: Any) -> PresetConfig:
    """A preset by name (or a config as is), with keyword overrides of its fields."""
    if isinstance(preset, PresetConfig):
        config = preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return dataclasses.replace(config, **overrides) if overrides else config


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`FIELD=VALUE` texts -> keyword overrides of `PresetConfig` fields (for `get_preset` and the builders): a
    tuple's elements comma-separated (`seg_skip_names=s8,s4,s2`), `none` for a field that may be None, booleans as
    true/false. Raises ValueError naming the pair that is not a field or whose value does not parse."""
    hints = typing.get_type_hints(PresetConfig)
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = (part.strip() for part in pair.partition("="))
        if not equals or name not in hints or name == "name":
            known = ", ".join(n for n in hints if n != "name")
            raise ValueError(f"{pair!r}: expected FIELD=VALUE with FIELD one of {known}")
        try:
            overrides[name] = _parse_field(text, hints[name])
        except ValueError as e:
            raise ValueError(f"{pair!r}: {e}") from None
    return overrides


def _parse_field(text: str, annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation):
        return None if text.lower() == "none" else _parse_field(text, args[0])
    if typing.get_origin(annotation) is tuple:
        return tuple(_parse_field(part, args[0]) for part in text.split(","))
    if annotation is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    try:
        return annotation(text)
    except ValueError:
        raise ValueError(f"expected {annotation.__name__}, got {text!r}") from None


def _on(device: str | torch.device | None):
    return torch.device(device) if device is not None else torch.device("cpu")


def build_model(
    preset: str | PresetConfig = "lite",
    num_classes: int = NUM_CLASSES,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> PerceptionPipeline:
    """The whole temporal pipeline (`.geometry_filter`, `.ego_motion_filter`) of a preset, randomly initialised.

    `device="meta"` builds it without allocating memory (for counting parameters). Keyword
    overrides change preset fields, e.g. `build_model("lite", hidden_channels=64)`.
    """
    config = get_preset(preset, **overrides)
    with _on(device):
        return PerceptionPipeline(config, num_classes)


def build_geometry_filter(
    preset: str | PresetConfig = "lite",
    num_classes: int = NUM_CLASSES,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> GeometryFilter:
    """The preset's `GeometryFilter` alone."""
    c = get_preset(preset, **overrides)
    with _on(device):
        return GeometryFilter(num_classes=num_classes, **c.geometry_filter_kwargs())


def build_ego_motion_filter(
    preset: str | PresetConfig = "lite", device: str | torch.device | None = None, **overrides: Any
) -> EgoMotionFilter:
    """The preset's `EgoMotionFilter` alone."""
    c = get_preset(preset, **overrides)
    with torch.device("meta"):  # only its channel count is needed
        embed = GeometryFilter(num_classes=NUM_CLASSES, **c.geometry_filter_kwargs()).motion_channels
    with _on(device):
        return EgoMotionFilter(
            embed, c.motion_channels, c.motion_strides, c.ego_gru_hidden, difference=c.motion_difference
        )


def build_segmentation_model(
    preset: str | PresetConfig = "lite",
    num_classes: int = NUM_CLASSES,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> SegmentationModel:
    """The single-frame segmentation baseline of a preset (DeepLabv3-ResNet50 for `full`)."""
    c = get_preset(preset, **overrides)
    with _on(device):
        return SegmentationModel(
            c.backbone,
            num_classes,
            c.seg_head,
            c.embed_channels,
            c.seg_inter_channels,
            c.seg_skips(),
        )


def build_depth_model(
    preset: str | PresetConfig = "lite", device: str | torch.device | None = None, **overrides: Any
) -> DepthEstimationModel:
    """The single-frame depth baseline of a preset (ResNet-50 encoder + decoder for `full`)."""
    c = get_preset(preset, **overrides)
    with _on(device):
        return DepthEstimationModel(
            c.backbone,
            c.embed_channels,
            c.skip_names,
            c.decoder_widths,
            c.decoder_reduce_kernel,
            c.decoder_convs_per_stage,
        )


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())
