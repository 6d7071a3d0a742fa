"""CARLA's conventions, in one place: classes and tags, depth encoding, camera, poses, warping.

Everything that touches a label id, a depth image, a camera matrix or a pose goes through these
functions, so the embedded world, the CARLA backend, the models and the metrics agree.
"""

from .camera import back_project, back_project_depth_map, focal_length, intrinsics, pixel_centres, project
from .classes import (
    CARLA_TAG_NAMES,
    CARLA_TAG_TO_CLASS,
    CLASS_IDS,
    CLASS_NAMES,
    MOVING_CLASSES,
    NUM_CLASSES,
    PALETTE,
    bgra_to_array,
    colorize,
    labels_from_bgra,
    remap_carla_tags,
)
from .depth import FAR_PLANE_M, decode_carla_depth, decode_carla_depth_bgra, encode_carla_depth
from .poses import invert_rigid, matrix_to_pose6, pose6_to_matrix, relative_pose
from .warp import warp_labels, warp_to_current

__all__ = [
    "CARLA_TAG_NAMES",
    "CARLA_TAG_TO_CLASS",
    "CLASS_IDS",
    "CLASS_NAMES",
    "FAR_PLANE_M",
    "MOVING_CLASSES",
    "NUM_CLASSES",
    "PALETTE",
    "back_project",
    "back_project_depth_map",
    "bgra_to_array",
    "colorize",
    "decode_carla_depth",
    "decode_carla_depth_bgra",
    "encode_carla_depth",
    "focal_length",
    "intrinsics",
    "invert_rigid",
    "labels_from_bgra",
    "matrix_to_pose6",
    "pixel_centres",
    "pose6_to_matrix",
    "project",
    "relative_pose",
    "remap_carla_tags",
    "warp_labels",
    "warp_to_current",
]
