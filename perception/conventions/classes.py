"""The 22 semantic classes, CARLA's palette, and the CARLA 0.9.14+ tag remap.

The class ids are CARLA 0.9.10-0.9.13's tags, which the seed project trained on. CARLA 0.9.14
renumbered its tags (29 of them in 0.9.16); `CARLA_TAG_TO_CLASS` maps those back so that every
backend and every weights file speaks the same 22 ids.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Unlabeled",
    "Building",
    "Fence",
    "Other",
    "Pedestrian",
    "Pole",
    "RoadLine",
    "Road",
    "Sidewalk",
    "Vegetation",
    "Vehicles",
    "Wall",
    "TrafficSign",
    "Sky",
    "Ground",
    "Bridge",
    "RailTrack",
    "GuardRail",
    "TrafficLight",
    "Static",
    "Dynamic",
    "Water",
)
NUM_CLASSES = len(CLASS_NAMES)
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# CARLA 0.9.13's CityScapes palette (RGB), indexed by class id.
PALETTE = np.array(
    [
        (0, 0, 0),
        (70, 70, 70),
        (100, 40, 40),
        (55, 90, 80),
        (220, 20, 60),
        (153, 153, 153),
        (157, 234, 50),
        (128, 64, 128),
        (244, 35, 232),
        (107, 142, 35),
        (0, 0, 142),
        (102, 102, 156),
        (220, 220, 0),
        (70, 130, 180),
        (81, 0, 81),
        (150, 100, 100),
        (230, 150, 140),
        (180, 165, 180),
        (250, 170, 30),
        (110, 190, 160),
        (170, 120, 50),
        (45, 60, 150),
    ],
    dtype=np.uint8,
)

# Classes whose objects move on their own; the temporal-consistency metric masks them.
MOVING_CLASSES: tuple[int, ...] = (CLASS_IDS["Pedestrian"], CLASS_IDS["Vehicles"], CLASS_IDS["Dynamic"])

# CARLA 0.9.14+ tag names, in tag order (0..28), as listed in CARLA 0.9.16's sensor reference.
CARLA_TAG_NAMES: tuple[str, ...] = (
    "Unlabeled",
    "Roads",
    "SideWalks",
    "Building",
    "Wall",
    "Fence",
    "Pole",
    "TrafficLight",
    "TrafficSign",
    "Vegetation",
    "Terrain",
    "Sky",
    "Pedestrian",
    "Rider",
    "Car",
    "Truck",
    "Bus",
    "Train",
    "Motorcycle",
    "Bicycle",
    "Static",
    "Dynamic",
    "Other",
    "Water",
    "RoadLine",
    "Ground",
    "Bridge",
    "RailTrack",
    "GuardRail",
)

# Tag -> class. Terrain (10) becomes Ground: the old tag set had no terrain and
# CARLA 0.9.13 tagged most terrain meshes as Ground.
_TAG_TO_CLASS = (
    0,
    7,
    8,
    1,
    11,
    2,
    5,
    18,
    12,
    9,
    14,
    13,
    4,
    4,
    10,
    10,
    10,
    10,
    10,
    10,
    19,
    20,
    3,
    21,
    6,
    14,
    15,
    16,
    17,
)

# A 256-entry lookup table so whole label images are remapped with one indexing operation.
# Tags CARLA may add after 0.9.16 fall back to Unlabeled.
CARLA_TAG_TO_CLASS = np.zeros(256, dtype=np.uint8)
CARLA_TAG_TO_CLASS[: len(_TAG_TO_CLASS)] = _TAG_TO_CLASS


def remap_carla_tags(tags: np.ndarray) -> np.ndarray:
    """Map an array of CARLA 0.9.14+ semantic tags (any shape, uint8) to the 22 class ids."""
    tags = np.asarray(tags)
    if tags.dtype != np.uint8:
        if tags.size and (tags.min() < 0 or tags.max() > 255):
            raise ValueError(f"CARLA semantic tags must lie in 0..255, got {tags.min()}..{tags.max()}")
        tags = tags.astype(np.uint8)
    return CARLA_TAG_TO_CLASS[tags]


def bgra_to_array(raw: bytes | bytearray | memoryview | np.ndarray, height: int, width: int) -> np.ndarray:
    """View CARLA's raw image buffer (BGRA, row-major, 4 bytes a pixel) as an (H, W, 4) uint8 array."""
    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1)
    if buf.dtype != np.uint8:
        raise ValueError(f"a raw CARLA image buffer must be uint8 bytes, got dtype {buf.dtype}")
    if buf.size != height * width * 4:
        raise ValueError(
            f"a raw CARLA image buffer of {height}x{width} BGRA pixels needs {height * width * 4} bytes, got {buf.size}"
        )
    return buf.reshape(height, width, 4)


def labels_from_bgra(
    raw: bytes | bytearray | memoryview | np.ndarray, height: int, width: int, *, remap: bool = True
) -> np.ndarray:
    """Read class ids from a CARLA semantic camera's raw BGRA buffer.

    The tag is stored in the red channel (byte 2 of each pixel); the palette colours that CARLA's
    `CityScapesPalette` converter produces are never used, since they are lossy. With `remap`
    (the default) CARLA 0.9.14+ tags are converted to the 22 class ids.
    """
    tags = bgra_to_array(raw, height, width)[:, :, 2]
    return remap_carla_tags(tags) if remap else tags.copy()


def colorize(labels: np.ndarray) -> np.ndarray:
    """Colour a label map (H, W) of class ids with CARLA's CityScapes palette, giving (H, W, 3) RGB uint8."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"class ids must lie in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")
    return PALETTE[labels]
