"""Loading recorded clips for training and evaluation."""

from .clips import FORMAT_VERSION, MODALITIES, Clip, ClipFormatError, ClipMeta, ClipStore, frame_filename
from .windows import ClipWindows

__all__ = ["FORMAT_VERSION", "MODALITIES", "Clip", "ClipFormatError", "ClipMeta", "ClipStore", "ClipWindows", "frame_filename"]
