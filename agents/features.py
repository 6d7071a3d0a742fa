"""Stable-Baselines3 features extractors for the `CarlaPerception-v0` observation, and a size check for SB3's own."""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from torch import nn

from carla_gym.env.observation import (
    IMAGE_KEYS,
    NATURE_CNN_MIN_SIZE,
    OPTIONAL_VECTOR_KEYS,
    STATE_HIGH,
    STATE_LAST_ACTION,
    VECTOR_KEYS,
)


def as_unit_image(image: torch.Tensor) -> torch.Tensor:
    """An image key as float in [0, 1]: uint8 codes are divided by 255; floats are taken as already scaled
    (SB3 divides image spaces by 255 before the extractor when `normalize_images` is on, its default)."""
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()


class PerceptionExtractor(BaseFeaturesExtractor):
    """Small CNN over the semantic + depth channels, MLP over the vectors (`road_users` too where the space
    has it), concatenated.

    The CNN is sized for the default 40x80 observation (NatureCNN's 8x8 stride-4 first layer
    throws away too much at this size, and nothing of a side under 36 pixels): three stride-2 3x3
    convolutions, then global pooling over a 2x4 grid so the policy keeps coarse
    left/right/near/far layout. It takes any observation size.

    The image keys may arrive as uint8 0..255 (RLlib, a direct call) or as floats in [0, 1] (SB3
    with `normalize_images=True`); see `as_unit_image`.

    `last_action=False` zeroes the last action in `state` (every stacked copy of it), so the policy
    cannot see it: a policy imitating a smooth expert otherwise learns to repeat its last action, and
    reacts late when the expert changes its mind (the "copycat" shortcut, Wen et al., NeurIPS 2020).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        cnn_channels: int = 32,
        vector_dim: int = 64,
        features_dim: int = 256,
        last_action: bool = True,
    ) -> None:
        super().__init__(observation_space, features_dim)
        image_channels = sum(cast(gym.spaces.Box, observation_space[k]).shape[0] for k in IMAGE_KEYS)
        c = cnn_channels
        self.cnn = nn.Sequential(
            nn.Conv2d(image_channels, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((2, 4)),
            nn.Flatten(),
        )
        self.vector_keys = [k for k in VECTOR_KEYS + OPTIONAL_VECTOR_KEYS if k in observation_space.spaces]
        vector_in = sum(int(torch.tensor(observation_space[k].shape).prod()) for k in self.vector_keys)
        self.mlp = nn.Sequential(nn.Linear(vector_in, vector_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * c * 8 + vector_dim, features_dim), nn.ReLU())
        state_mask = torch.ones(cast(gym.spaces.Box, observation_space["state"]).shape)
        if not last_action:  # stacked states lie end to end
            state_mask.view(-1, len(STATE_HIGH))[:, list(STATE_LAST_ACTION)] = 0.0
        self.state_mask: torch.Tensor
        self.register_buffer("state_mask", state_mask, persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = torch.cat([as_unit_image(obs[k]) for k in IMAGE_KEYS], dim=1)
        obs = {**obs, "state": obs["state"] * self.state_mask}
        vectors = torch.cat([obs[k].flatten(1).float() for k in self.vector_keys], dim=1)
        return self.head(torch.cat([self.cnn(image), self.mlp(vectors)], dim=1))


def check_image_extractor(
    observation_space: gym.Space, features_extractor_class: type[nn.Module], normalized_image: bool = False
) -> None:
    """Raise ValueError when SB3's NatureCNN would get an image too small for it.

    NatureCNN runs on every image key on its own or inside CombinedExtractor (the extractor of SB3's
    `MultiInputPolicy` by default) and fails with a bare convolution error for a side under
    NATURE_CNN_MIN_SIZE pixels; this names the observation size, the minimum and the ways out.
    Other extractors (PerceptionExtractor takes any size) pass. `normalized_image` as SB3's extractors take it.
    """
    if not issubclass(features_extractor_class, (NatureCNN, CombinedExtractor)):
        return
    spaces = observation_space.spaces if isinstance(observation_space, gym.spaces.Dict) else {"": observation_space}
    images = {  # NatureCNN takes images channel-first: (C, h, w)
        key: cast(tuple[int, int, int], space.shape)
        for key, space in spaces.items()
        if is_image_space(space, normalized_image=normalized_image)
    }
    small = {key: shape[1:] for key, shape in images.items() if min(shape[1:]) < NATURE_CNN_MIN_SIZE}
    if small:
        keys = ", ".join(f"{key or 'the observation'} {h}x{w}" for key, (h, w) in small.items())
        raise ValueError(
            f"obs_size too small for {features_extractor_class.__name__}: SB3's NatureCNN needs images of at least "
            f"{NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE} pixels, got {keys}; make the env with a larger obs_size "
            f"(e.g. the default (40, 80)) or use features_extractor_class=agents.features.PerceptionExtractor, "
            "which takes any size"
        )
