"""Converting CARLA measurements into the contract's arrays and events."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.conventions import CLASS_IDS, bgra_to_array, decode_carla_depth_bgra, labels_from_bgra, remap_carla_tags

from ..contract import Event, EventKind


def rgb_from_image(image: Any) -> np.ndarray:
    """(H, W, 3) RGB uint8 from a `carla.Image` of an RGB camera (BGRA bytes)."""
    return np.ascontiguousarray(bgra_to_array(image.raw_data, image.height, image.width)[:, :, 2::-1])


def labels_from_image(image: Any) -> np.ndarray:
    """(H, W) 22-class ids from a semantic camera's raw image (tag in the red channel)."""
    return labels_from_bgra(image.raw_data, image.height, image.width)


def depth_from_image(image: Any) -> np.ndarray:
    """(H, W) float32 planar metres from a depth camera's raw image."""
    return decode_carla_depth_bgra(bgra_to_array(image.raw_data, image.height, image.width))


def matrix_of(transform: Any) -> np.ndarray:
    """4x4 float64 matrix of a `carla.Transform`."""
    return np.array(transform.get_matrix(), dtype=np.float64)


def collision_event(event: Any) -> Event:
    """A `carla.CollisionEvent` as a contract Event with the other party's 22-class id."""
    tags = list(getattr(event.other_actor, "semantic_tags", []) or [])
    type_id = getattr(event.other_actor, "type_id", "")
    if tags:
        other = int(remap_carla_tags(np.array(tags[:1], dtype=np.uint8))[0])
    elif type_id.startswith("vehicle."):
        other = CLASS_IDS["Vehicles"]
    elif type_id.startswith("walker."):
        other = CLASS_IDS["Pedestrian"]
    else:
        other = CLASS_IDS["Static"]
    impulse = event.normal_impulse
    intensity = float(np.sqrt(impulse.x**2 + impulse.y**2 + impulse.z**2))
    return Event(EventKind.COLLISION, other_class=other, intensity=intensity, detail=type_id)


def lane_invasion_events(event: Any) -> list[Event]:
    """A `carla.LaneInvasionEvent` as one Event per crossed painted line, "solid" or "dashed".

    Double lines count as solid when either line is solid (crossing them is not allowed); kerbs,
    grass and unmarked borders are not lane markings and are skipped.
    """
    out = []
    for marking in event.crossed_lane_markings:
        name = str(marking.type)
        if "Solid" in name:
            out.append(Event(EventKind.LANE_INVASION, detail="solid"))
        elif "Broken" in name or name == "BottsDots":
            out.append(Event(EventKind.LANE_INVASION, detail="dashed"))
    return out
