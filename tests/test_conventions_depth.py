import numpy as np
import pytest

from perception.conventions import decode_carla_depth, decode_carla_depth_bgra, encode_carla_depth

STEP_M = 1000.0 / (256**3 - 1)


@pytest.mark.parametrize("metres", [0.001, 1.0, 999.0])
def test_encode_decode_round_trip_within_half_a_code(metres):
    decoded = decode_carla_depth(encode_carla_depth(np.array([metres])), np.float64)[0]
    assert abs(decoded - metres) <= STEP_M / 2


def test_one_metre_encodes_to_hand_computed_bytes():
    # 1 m -> code round(16777215 / 1000) = 16777 = 0x004189 -> R=0x89, G=0x41, B=0x00
    assert encode_carla_depth(np.array(1.0)).tolist() == [0x89, 0x41, 0x00]


def test_every_code_round_trips_losslessly():
    codes = np.arange(0, 256**3, 97, dtype=np.uint32)
    rgb = np.stack([codes & 255, (codes >> 8) & 255, codes >> 16], axis=-1).astype(np.uint8)
    assert np.array_equal(encode_carla_depth(decode_carla_depth(rgb, np.float64)), rgb)
    assert decode_carla_depth(rgb[-1:], np.float64)[0] == pytest.approx(1000.0 * codes[-1] / (256**3 - 1))


def test_bgra_decode_reads_channels_in_carla_order():
    bgra = np.array([[[0x00, 0x41, 0x89, 255]]], dtype=np.uint8)  # B, G, R, A
    assert decode_carla_depth_bgra(bgra)[0, 0] == pytest.approx(16777 * STEP_M, abs=1e-5)


def test_far_plane_clamps_and_bad_depth_is_rejected():
    assert encode_carla_depth(np.array(5000.0)).tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="non-negative"):
        encode_carla_depth(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="uint8"):
        decode_carla_depth(np.zeros((2, 2, 3), np.float32))
