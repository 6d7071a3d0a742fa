"""The temporal perception models, in torchvision style: one module per family, builders in `presets`.

Quick start::

    model = perception.build_model("lite")            # PerceptionPipeline
    out = model(normalize(rgb_seq))                   # (B, T, 3, H, W) -> seg, depth, pose6 per frame
"""

from .backbones import MobileNetV3Backbone, ResNet50Backbone, build_backbone, build_projection
from .convgru import ConvGRUCell
from .decoder import SkipDecoder, SkipSpec
from .depth import MAX_DEPTH_M, MIN_DEPTH_M, DepthDecoder, DepthEstimationModel, log_depth_to_metres
from .ego_motion import CameraHead, EgoMotionFilter, MotionEstimator
from .geometry_filter import GeometryFilter
from .pipeline import PerceptionPipeline, PipelineState
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_images
from .presets import (
    PRESETS,
    PresetConfig,
    build_depth_model,
    build_ego_motion_filter,
    build_geometry_filter,
    build_model,
    build_segmentation_model,
    count_parameters,
    get_preset,
    parse_overrides,
)
from .segmentation import SegmentationHead, SegmentationModel

__all__ = [
    "CameraHead",
    "ConvGRUCell",
    "DepthDecoder",
    "DepthEstimationModel",
    "EgoMotionFilter",
    "GeometryFilter",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_DEPTH_M",
    "MIN_DEPTH_M",
    "MobileNetV3Backbone",
    "MotionEstimator",
    "PRESETS",
    "PerceptionPipeline",
    "PipelineState",
    "PresetConfig",
    "ResNet50Backbone",
    "SegmentationHead",
    "SegmentationModel",
    "SkipDecoder",
    "SkipSpec",
    "build_backbone",
    "build_depth_model",
    "build_ego_motion_filter",
    "build_geometry_filter",
    "build_model",
    "build_projection",
    "build_segmentation_model",
    "count_parameters",
    "get_preset",
    "parse_overrides",
    "log_depth_to_metres",
    "normalize",
    "resize_images",
]
