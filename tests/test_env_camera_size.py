"""The env's camera follows the perception weights' input size unless told otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carla_gym.env.config import EnvConfig
from carla_gym.sim.contract import DEFAULT_CAMERA_SIZE
from perception import build_model
from perception.weights import read_weights_config, save_weights


@pytest.fixture(scope="module")
def weights_64x128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(build_model("lite"), tmp_path_factory.mktemp("w") / "small", input_size=(64, 128))


def test_default_camera_is_the_bundled_weights_input_size() -> None:
    from carla_gym.env.perception_source import BUNDLED_WEIGHTS

    assert EnvConfig().camera_size == tuple(read_weights_config(BUNDLED_WEIGHTS)["input_size"])
    assert EnvConfig(perception="ground_truth").camera_size == DEFAULT_CAMERA_SIZE


def test_camera_follows_other_weights_unless_given(weights_64x128: Path) -> None:
    assert EnvConfig(weights=weights_64x128).camera_size == (64, 128)
    assert EnvConfig(weights=weights_64x128, camera_size=(96, 192)).camera_size == (96, 192)
    # a config whose camera followed its weights follows new ones; a camera that was given stays
    assert EnvConfig.from_kwargs(EnvConfig(), weights=weights_64x128).camera_size == (64, 128)
    given = EnvConfig(camera_size=(96, 192))
    assert EnvConfig.from_kwargs(given, weights=weights_64x128).camera_size == (96, 192)


def test_unreadable_weights_leave_the_error_to_their_loader(tmp_path: Path, weights_64x128: Path) -> None:
    """The camera default does not fail on a missing folder or a bad input size: the perception loader names
    the problem when the env starts."""
    assert EnvConfig(weights=tmp_path / "missing").camera_size == DEFAULT_CAMERA_SIZE
    bad = tmp_path / "bad"
    shutil.copytree(weights_64x128, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "input_size": [0, 128]}))
    assert EnvConfig(weights=bad).camera_size == DEFAULT_CAMERA_SIZE
