"""Loading recorded clips for training and evaluation, and temporal augmentations."""

from .augment import (
    CORRUPTIONS,
    AugmentConfig,
    TemporalAugment,
    corrupt,
    hold_frames,
    mirror_frames,
    random_crops,
    zoom_frames,
)
from .clips import FORMAT_VERSION, MODALITIES, Clip, ClipFormatError, ClipMeta, ClipStore, frame_filename
from .windows import ClipWindows, EqualLengthBatches, mixed_windows

__all__ = [
    "CORRUPTIONS",
    "FORMAT_VERSION",
    "MODALITIES",
    "AugmentConfig",
    "Clip",
    "ClipFormatError",
    "ClipMeta",
    "ClipStore",
    "ClipWindows",
    "EqualLengthBatches",
    "TemporalAugment",
    "corrupt",
    "frame_filename",
    "hold_frames",
    "mixed_windows",
    "mirror_frames",
    "random_crops",
    "zoom_frames",
]
