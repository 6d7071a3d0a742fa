"""Policy folders (JSON + safetensors): exact round trip, clear errors on bad fields, and no unpickling of untrusted .zip files."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import stat
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import agents
from agents import evaluate
from agents.features import PerceptionExtractor
from agents.policies import PickleRefusedError, load_policy
from agents.policy_files import CONFIG_FILE, WEIGHTS_FILE, PolicyFileError, save_policy
from carla_gym.env import observation_space

TINY_EXTRACTOR = dict(
    features_extractor_class=PerceptionExtractor,
    features_extractor_kwargs=dict(cnn_channels=2, vector_dim=4, features_dim=8),
)


class _SpacesEnv(gym.Env):
    """Just the spaces, for PPO's constructor."""

    def __init__(self, space: gym.Space) -> None:
        self.observation_space, self.action_space = space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _model(space: gym.Space, **policy_kwargs) -> PPO:
    return PPO(
        "MultiInputPolicy",
        DummyVecEnv([lambda: _SpacesEnv(space)]),
        n_steps=8,
        batch_size=8,
        seed=0,
        use_sde=policy_kwargs.pop("use_sde", False),
        policy_kwargs=policy_kwargs,
    )


def _mixed_space() -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {
            "speed": gym.spaces.Box(0.0, np.inf, (1,), np.float32),
            "route": gym.spaces.Box(np.array([-1.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32)),
            "light": gym.spaces.Discrete(3),
        }
    )


@pytest.fixture
def saved(tmp_path):
    model = _model(
        observation_space((8, 16)), use_sde=True, log_std_init=-2.0, net_arch=dict(pi=[8], vf=[8]), **TINY_EXTRACTOR
    )
    folder = save_policy(model, tmp_path / "policy", {"perception": "ground_truth", "camera_size": [16, 32]})
    return model, folder


@pytest.mark.parametrize("case", ["perception_gsde", "combined_mixed_spaces"])
def test_saved_policy_reloads_with_identical_actions(tmp_path, case):
    if case == "perception_gsde":
        space = observation_space((8, 16))
        model = _model(space, use_sde=True, log_std_init=-2.0, net_arch=dict(pi=[8], vf=[8]), **TINY_EXTRACTOR)
    else:
        space = _mixed_space()
        model = _model(space, net_arch=[4])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.policy.parameters():  # away from the initialisation, so a wrong load would show
            p.add_(0.1 * torch.randn_like(p))
    loaded = agents.load_policy(save_policy(model, tmp_path / "p", {"perception": "model"}), device="cpu")
    assert loaded.observation_space == space and loaded.metadata == {"perception": "model"}
    space.seed(0)
    for _ in range(4):
        obs = space.sample()
        expected = model.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(loaded.predict(obs)[0], expected)
        np.testing.assert_array_equal(loaded(obs, None), expected)


def test_a_policy_folder_gets_plain_modes(saved, tmp_path):
    """Not the 0700 of a temporary folder nor the 0600 safetensors writes: others may read a shared policy."""
    model, _ = saved
    old = os.umask(0o022)
    try:
        folder = save_policy(model, tmp_path / "shared", {"perception": "model"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        CONFIG_FILE: 0o644,
        WEIGHTS_FILE: 0o644,
    }


def test_saving_over_a_policy_replaces_it_but_never_another_folder(saved, tmp_path):
    model, folder = saved
    save_policy(model, folder, {"perception": "model"})
    assert agents.load_policy(folder).metadata == {"perception": "model"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]  # no staging folder left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a policy folder"):
        save_policy(model, other)
    assert (other / "keep.txt").read_text() == "mine"


def _edit(config: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        config = config[key]
    if value is _DELETE:
        del config[last]
    else:
        config[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("format", "sb3", "field 'format' must be"),
        ("version", 2, "field 'version' must be 1"),
        ("policy_class", "os.system", "field 'policy_class' names \"os.system\", which is not allowed"),
        (
            "policy_kwargs.features_extractor_class",
            "builtins.eval",
            "field 'policy_kwargs.features_extractor_class' names \"builtins.eval\", which is not allowed",
        ),
        ("policy_kwargs.activation_fn", "Swish", "field 'policy_kwargs.activation_fn' names \"Swish\""),
        ("policy_kwargs.net_arch", ["8"], "field 'policy_kwargs.net_arch' must be a list of integers"),
        ("policy_kwargs.use_sde", "yes", "field 'policy_kwargs.use_sde' must be bool"),
        ("policy_kwargs.optimizer_class", "SGD", "field 'policy_kwargs.optimizer_class' is not a known option"),
        (
            "observation_space.spaces.depth.dtype",
            "object",
            "field 'observation_space.spaces.depth.dtype' must be one of",
        ),
        (
            "observation_space.spaces.depth.shape",
            [1, -8, 16],
            "field 'observation_space.spaces.depth.shape' must be a list",
        ),
        ("observation_space.spaces.state.low", [0.0, 1.0], "field 'observation_space.spaces.state.low' has shape [2]"),
        (
            "observation_space.spaces.state.high",
            "huge",
            "field 'observation_space.spaces.state.high' must hold numbers",
        ),
        ("action_space.type", "Tuple", "field 'action_space.type' must be Dict, Box or Discrete"),
        ("action_space", _DELETE, "field 'action_space' is missing"),
    ],
)
def test_bad_json_fields_are_named(saved, field, value, message):
    _, folder = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    _edit(config, field, value)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PolicyFileError, match=str(folder / CONFIG_FILE).replace(".", r"\.")) as err:
        agents.load_policy(folder)
    assert message in str(err.value)


def test_broken_files_give_clear_errors(saved, tmp_path):
    model, folder = saved
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(PolicyFileError, match=f"{CONFIG_FILE}: not valid JSON"):
        agents.load_policy(folder)
    other = save_policy(_model(observation_space((8, 16)), net_arch=[4], **TINY_EXTRACTOR), tmp_path / "other")
    shutil.copy(other / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    save_policy(model, tmp_path / "fresh")
    shutil.copy(tmp_path / "fresh" / CONFIG_FILE, folder / CONFIG_FILE)
    with pytest.raises(PolicyFileError, match=f"{WEIGHTS_FILE}: does not hold this policy's weights"):
        agents.load_policy(folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}: missing"):
        agents.load_policy(folder)


class _Payload:
    """Unpickling this creates the marker file: what a crafted policy .zip could do."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _crafted_zip(tmp_path, marker):
    path = tmp_path / "crafted.zip"
    entry = {
        ":type:": "<class 'object'>",
        "__module__": "stable_baselines3.common.policies",
        ":serialized:": base64.b64encode(pickle.dumps(_Payload(marker))).decode(),
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps({"policy_class": entry}))
    return path


def test_a_crafted_zip_is_refused_without_trust_pickle(tmp_path):
    marker = tmp_path / "pwned"
    crafted = _crafted_zip(tmp_path, marker)
    with pytest.raises(PickleRefusedError, match="--trust-pickle"):
        load_policy(str(crafted))
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(crafted), "--episodes", "1", "--perception", "ground_truth"])
    assert err.value.code == 2
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - opting in runs the payload, then fails to load; the marker proves the threat was real
        load_policy(str(crafted), trust_pickle=True)
    assert marker.exists()


def test_a_trusted_zip_converts_to_a_policy_folder(saved, tmp_path):
    from agents import convert_policy

    model, _ = saved
    model.save(tmp_path / "mine.zip")
    with pytest.raises(SystemExit) as err:  # converting unpickles: the flag is required
        convert_policy.main([str(tmp_path / "mine.zip"), str(tmp_path / "converted")])
    assert err.value.code == 2 and not (tmp_path / "converted").exists()
    assert (
        convert_policy.main(
            [str(tmp_path / "mine.zip"), str(tmp_path / "converted"), "--trust-pickle", "--perception", "model"]
        )
        == 0
    )
    loaded = agents.load_policy(tmp_path / "converted")
    assert loaded.metadata["perception"] == "model" and loaded.metadata["converted_from"].endswith("mine.zip")
    obs = loaded.observation_space.sample()
    np.testing.assert_array_equal(loaded.predict(obs)[0], model.predict(obs, deterministic=True)[0])
