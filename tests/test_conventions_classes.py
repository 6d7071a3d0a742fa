import numpy as np
import pytest

from perception.conventions import (
    CARLA_TAG_NAMES,
    CLASS_IDS,
    CLASS_NAMES,
    NUM_CLASSES,
    PALETTE,
    colorize,
    labels_from_bgra,
    remap_carla_tags,
)

# The tag -> class table of the CARLA conventions, written out by name so that a typo in the lookup table cannot hide here.
EXPECTED_REMAP = {
    "Unlabeled": "Unlabeled",
    "Roads": "Road",
    "SideWalks": "Sidewalk",
    "Building": "Building",
    "Wall": "Wall",
    "Fence": "Fence",
    "Pole": "Pole",
    "TrafficLight": "TrafficLight",
    "TrafficSign": "TrafficSign",
    "Vegetation": "Vegetation",
    "Terrain": "Ground",
    "Sky": "Sky",
    "Pedestrian": "Pedestrian",
    "Rider": "Pedestrian",
    "Car": "Vehicles",
    "Truck": "Vehicles",
    "Bus": "Vehicles",
    "Train": "Vehicles",
    "Motorcycle": "Vehicles",
    "Bicycle": "Vehicles",
    "Static": "Static",
    "Dynamic": "Dynamic",
    "Other": "Other",
    "Water": "Water",
    "RoadLine": "RoadLine",
    "Ground": "Ground",
    "Bridge": "Bridge",
    "RailTrack": "RailTrack",
    "GuardRail": "GuardRail",
}


def test_class_ids_follow_carla_0913_tag_order():
    assert NUM_CLASSES == 22
    assert CLASS_NAMES[0] == "Unlabeled" and CLASS_NAMES[7] == "Road" and CLASS_NAMES[21] == "Water"
    assert CLASS_IDS["Vehicles"] == 10 and CLASS_IDS["Sky"] == 13


@pytest.mark.parametrize("tag", range(29))
def test_every_carla_tag_maps_as_in_spec(tag):
    expected = CLASS_IDS[EXPECTED_REMAP[CARLA_TAG_NAMES[tag]]]
    assert remap_carla_tags(np.array([tag], dtype=np.uint8))[0] == expected


def test_tag_names_match_the_carla_package():
    carla = pytest.importorskip("carla")
    names = {int(v): k for k, v in carla.CityObjectLabel.names.items()}
    assert names[10] == "Terrain" and names[24] == "RoadLines" and names[28] == "GuardRail"
    assert len([t for t in names if t < 255]) == 29


def test_labels_read_from_red_channel_of_bgra():
    # 2x2 image: tags 1 (road), 14 (car), 11 (sky), 24 (road line) in byte 2 of each BGRA pixel,
    # with garbage in the other channels that must be ignored.
    tags = [1, 14, 11, 24]
    raw = bytearray()
    for t in tags:
        raw += bytes([200, 100, t, 255])
    labels = labels_from_bgra(bytes(raw), 2, 2)
    assert labels.tolist() == [[7, 10], [13, 6]]
    assert labels_from_bgra(bytes(raw), 2, 2, remap=False).tolist() == [[1, 14], [11, 24]]


def test_bgra_buffer_of_wrong_size_is_named():
    with pytest.raises(ValueError, match="needs 16 bytes, got 12"):
        labels_from_bgra(bytes(12), 2, 2)


def test_colorize_uses_cityscapes_palette():
    out = colorize(np.array([[7, 13]], dtype=np.uint8))
    assert out.shape == (1, 2, 3)
    assert out[0, 0].tolist() == [128, 64, 128] and out[0, 1].tolist() == [70, 130, 180]
    assert PALETTE.shape == (22, 3)
    with pytest.raises(ValueError, match="0..21"):
        colorize(np.array([22]))
