"""The observation's image keys are images to SB3 and Gymnasium: check_env, VecFrameStack, VecNormalize, NatureCNN."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

import carla_gym  # noqa: F401  (registers the env)
from agents.features import PerceptionExtractor, check_image_extractor
from agents.policy_files import CONFIG_FILE, PolicyFileError, load_policy, save_policy
from carla_gym.env import observation_space
from carla_gym.env.observation import IMAGE_KEYS, VECTOR_KEYS, depth_metres, normalise_depth
from carla_gym.env.perception_source import (
    GroundTruthPerception,
    PerceptionInput,
    depth_observation,
    perception_input,
)
from perception.conventions import CLASS_IDS

# The smallest observation SB3's NatureCNN takes, from a camera of the same size (cheap to render).
NATURE_SIZE = (36, 72)
ENV_KWARGS = dict(perception="ground_truth", camera_size=NATURE_SIZE, obs_size=NATURE_SIZE, vehicles=1, pedestrians=1)


def _make() -> gym.Env:
    return gym.make("CarlaPerception-v0", **ENV_KWARGS)


@pytest.fixture(scope="module")
def venv():
    env = DummyVecEnv([_make])
    yield env
    env.close()


@pytest.mark.parametrize("obs_size", [(6, 12), (36, 72), (40, 80)])
def test_image_keys_are_channel_first_uint8_images_and_vectors_are_flat(obs_size):
    space = observation_space(obs_size)
    for key in IMAGE_KEYS:
        assert is_image_space(space[key]) and is_image_space_channels_first(space[key]), key
        assert space[key].shape[1:] == obs_size
    for key in VECTOR_KEYS:
        assert space[key].dtype == np.float32 and len(space[key].shape) == 1, key
    assert space["route"].shape == (20,)


@pytest.mark.parametrize(
    ("metres", "code"),
    [
        (0.0, 0),
        (-1.0, 0),
        (100.0, 255),
        (900.0, 255),
        (101 ** (51 / 255) - 1, 51),  # exactly code 51 on the log scale
        (5.0, 99),  # 255 * ln 6 / ln 101 = 99.0005
    ],
)
def test_depth_codes(metres, code):
    assert normalise_depth(np.array([metres], np.float32)).tolist() == [code]


def test_depth_codes_round_trip_within_half_a_code():
    metres = np.geomspace(0.1, 100.0, 200).astype(np.float32)
    back = depth_metres(normalise_depth(metres))
    half_code = math.log1p(100.0) / 255 / 2
    assert np.all(np.abs(np.log1p(back) - np.log1p(metres)) <= half_code + 1e-6)


def test_depth_observation_takes_the_nearest_surface_per_cell():
    depth = torch.tensor([[[1000.0, 5.0, 1000.0, 1000.0], [1000.0, 1000.0, 1000.0, 1000.0]]])  # (1, 2, 4)
    obs = depth_observation(depth, (1, 2))
    assert obs.dtype == np.uint8 and obs.tolist() == [[[[99, 255]]]]


def test_ground_truth_semantic_is_each_group_s_share_of_the_cell():
    road, ground, car, sky = (CLASS_IDS[n] for n in ("Road", "Ground", "Vehicles", "Sky"))
    semantic = np.array([[road, road, car, sky], [road, ground, car, car]], np.uint8)  # (2, 4) -> cells of 2x2
    frame = PerceptionInput(np.eye(4), semantic=semantic, depth=np.full((2, 4), 10.0, np.float32))
    obs = GroundTruthPerception(1, (1, 2)).step([frame])["semantic"]  # (1, 6 groups, 1, 2)
    # road 3/4 -> 191, sidewalk (Ground) 1/4 -> 64 | vehicle 3/4 -> 191; the sky is in no group
    assert obs[0, :, 0].tolist() == [[191, 0], [0, 0], [64, 0], [0, 191], [0, 0], [0, 0]]


@pytest.mark.parametrize("kind, sent", [("model", {"rgb"}), ("ground_truth", {"semantic", "depth"})])
def test_perception_input_carries_only_the_images_its_perception_reads(kind, sent):
    frame = SimpleNamespace(
        rgb=np.zeros((2, 4, 3), np.uint8), semantic=np.zeros((2, 4), np.uint8), depth=np.ones((2, 4), np.float32)
    )
    frame.camera_to_world = np.eye(4)
    got = perception_input(frame, kind)
    assert {name for name in ("rgb", "semantic", "depth") if getattr(got, name) is not None} == sent
    assert got.camera_to_world is frame.camera_to_world


def test_ground_truth_perception_of_a_frame_sent_without_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="reads each frame's 'semantic' image, and a frame came without it"):
        GroundTruthPerception(1, (1, 2)).step([PerceptionInput(np.eye(4), rgb=np.zeros((2, 4, 3), np.uint8))])


def test_sb3_check_env_is_silent():
    env = _make()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert [str(w.message) for w in caught] == []
    finally:
        env.close()


def test_vec_frame_stack_stacks_images_along_channels(venv):
    stacked = VecFrameStack(venv, n_stack=3)
    h, w = NATURE_SIZE
    expected = {"semantic": (18, h, w), "depth": (3, h, w), "ego_motion": (18,), "state": (21,), "route": (60,)}
    assert {k: s.shape for k, s in stacked.observation_space.spaces.items()} == expected
    stacked.reset()
    obs, *_ = stacked.step(np.array([[0.0, 0.5]], np.float32))
    assert {k: v.shape[1:] for k, v in obs.items()} == expected
    raw = venv.buf_obs  # the newest frame fills the last channels
    assert np.array_equal(obs["depth"][:, -1:], raw["depth"]) and np.array_equal(
        obs["semantic"][:, -6:], raw["semantic"]
    )


def test_vec_normalize_on_the_vector_keys_keeps_the_images(venv):
    normalized = VecNormalize(venv, norm_obs_keys=list(VECTOR_KEYS))
    for key in IMAGE_KEYS:
        assert normalized.observation_space[key] == venv.observation_space[key]
    obs = normalized.reset()
    raw = normalized.get_original_obs()
    for key in IMAGE_KEYS:
        assert obs[key].dtype == np.uint8 and np.array_equal(obs[key], raw[key])
    assert obs["state"].dtype == np.float32 and not np.array_equal(obs["state"], raw["state"])


# SB3's rewrite of the env's space (below) makes Gymnasium's env checker warn about the uint8 images it then sees.
@pytest.mark.filterwarnings("ignore:.*(not within the observation space|expecting numpy array dtype):UserWarning")
@pytest.mark.parametrize("extractor", [CombinedExtractor, PerceptionExtractor])
def test_ppo_trains_behind_vec_normalize_without_options(extractor):
    """VecNormalize with no options normalises every key, images included (SB3 then declares them float32 in
    [-clip, clip] and CombinedExtractor flattens them rather than running NatureCNN); PPO still trains, with
    SB3's extractor and with the project's. A venv of its own: SB3 2.x writes the float32 spaces into the wrapped
    env's own observation space (DLR-RM/stable-baselines3#2286)."""
    venv = DummyVecEnv([_make])
    normalized = VecNormalize(venv)
    assert set(normalized.obs_rms) == set(IMAGE_KEYS) | set(VECTOR_KEYS)
    kwargs = dict(features_extractor_class=extractor)
    model = PPO(
        "MultiInputPolicy",
        normalized,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs=kwargs,
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(16)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    obs = normalized.reset()
    assert all(obs[key].dtype == np.float32 and np.abs(obs[key]).max() <= normalized.clip_obs for key in IMAGE_KEYS)
    normalized.close()


def test_ppo_multi_input_policy_runs_nature_cnn_on_both_image_keys(venv):
    model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu")
    extractor = model.policy.features_extractor
    assert isinstance(extractor, CombinedExtractor)
    assert all(isinstance(extractor.extractors[key], NatureCNN) for key in IMAGE_KEYS)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (1, 2) and np.all(np.abs(action) <= 1)


def test_too_small_obs_size_for_nature_cnn_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"obs_size too small .*36x36 .*depth 16x32, semantic 16x32.*PerceptionExtractor"
    ):
        check_image_extractor(observation_space((16, 32)), CombinedExtractor)
    with pytest.raises(ValueError, match=r"obs_size too small for NatureCNN.*the observation 16x32"):
        check_image_extractor(observation_space((16, 32))["depth"], NatureCNN)
    check_image_extractor(observation_space(NATURE_SIZE), CombinedExtractor)  # large enough
    check_image_extractor(observation_space((16, 32)), PerceptionExtractor)  # takes any size


def test_perception_extractor_scales_uint8_images_as_sb3_does():
    space = observation_space((8, 16))
    torch.manual_seed(0)
    extractor = PerceptionExtractor(space, cnn_channels=2, vector_dim=4, features_dim=8)
    space.seed(0)
    raw = {k: torch.as_tensor(np.stack([space[k].sample() for _ in range(2)])) for k in space.spaces}
    assert raw["depth"].dtype == torch.uint8
    sb3_style = {k: (v.float() / 255.0 if k in IMAGE_KEYS else v) for k, v in raw.items()}
    assert torch.equal(extractor(raw), extractor(sb3_style))
    unscaled = {k: v.float() for k, v in raw.items()}  # floats are taken as already scaled
    assert not torch.equal(extractor(raw), extractor(unscaled))


class _SpacesEnv(gym.Env):
    def __init__(self, space: gym.Space) -> None:
        self.observation_space, self.action_space = space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _saved_policy(tmp_path, space: gym.spaces.Dict) -> object:
    model = PPO(
        "MultiInputPolicy",
        DummyVecEnv([lambda: _SpacesEnv(space)]),
        n_steps=8,
        batch_size=8,
        seed=0,
        device="cpu",
        policy_kwargs=dict(
            features_extractor_class=PerceptionExtractor,
            features_extractor_kwargs=dict(cnn_channels=2, vector_dim=4, features_dim=8),
        ),
    )
    return save_policy(model, tmp_path / "policy")


def test_policy_with_the_earlier_float_depth_is_refused(tmp_path):
    old = dict(observation_space((8, 16)).spaces)
    old["depth"] = gym.spaces.Box(0.0, 1.0, (1, 8, 16), np.float32)
    folder = _saved_policy(tmp_path, gym.spaces.Dict(old))
    with pytest.raises(PolicyFileError, match=r"field 'observation_space.spaces.depth' is float32 in \[0, 1\].*uint8"):
        load_policy(folder)


def test_policy_file_naming_combined_extractor_at_a_too_small_size_is_refused(tmp_path):
    folder = _saved_policy(tmp_path, observation_space((16, 32)))
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["policy_kwargs"]["features_extractor_class"] = "CombinedExtractor"
    config["policy_kwargs"]["features_extractor_kwargs"] = {}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PolicyFileError, match=r"field 'policy_kwargs.features_extractor_class'.*36x36"):
        load_policy(folder)
