"""Loading recorded clips for training and evaluation, and temporal augmentations."""

from .augment import CORRUPTIONS, AugmentConfig, TemporalAugment, corrupt, mirror_frames, zoom_frames
from .clips import FORMAT_VERSION, MODALITIES, Clip, ClipFormatError, ClipMeta, ClipStore, frame_filename
from .windows import ClipWindows

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
    "TemporalAugment",
    "corrupt",
    "frame_filename",
    "mirror_frames",
    "zoom_frames",
]
