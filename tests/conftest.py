"""Shared test helpers: synthetic Frames built by hand, independent of any backend."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_gym.sim import Frame, Route
from perception.conventions import intrinsics, pose6_to_matrix


def make_frame(index: int, height: int = 8, width: int = 16, seed: int = 0) -> Frame:
    """A small Frame with random images and a camera that moves 1 m forward per frame."""
    rng = np.random.default_rng(seed + index)
    pose = pose6_to_matrix(np.array([float(index), 2.0, 1.4, 0.0, 0.0, 0.1]))
    return Frame(
        rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        semantic=rng.integers(0, 22, (height, width), dtype=np.uint8),
        depth=rng.uniform(0.5, 900.0, (height, width)).astype(np.float32),
        camera_to_world=pose,
        intrinsics=intrinsics(width, height, 90.0),
        frame=index,
        timestamp=0.1 * index,
        speed=10.0,
        transform=pose,
        route=Route(waypoints=np.zeros((5, 2), np.float32), distance_left=100.0 - index, length=100.0),
    )


@pytest.fixture
def frames() -> list[Frame]:
    return [make_frame(i) for i in range(5)]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny inputs gain nothing from two, and OpenMP stalls when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny clips of every split, recorded once per test run with the smoke profile's settings.

    Shared by every test that reads clips: a test that damages or extends the recordings works on a copy."""
    from carla_gym import training_data
    from perception.training import default_config

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("CARLA_GYM_CACHE")
    os.environ["CARLA_GYM_CACHE"] = str(cache)
    try:
        return training_data.record(default_config("lite", "smoke"), "embedded")
    finally:
        if old is None:
            os.environ.pop("CARLA_GYM_CACHE")
        else:
            os.environ["CARLA_GYM_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """ONNX Runtime exports made by the tests go to a temporary folder, never the user's cache."""
    from perception.onnx_engine import CACHE_ENV

    folder = tmp_path_factory.mktemp("onnx-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
