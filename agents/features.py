"""A Stable-Baselines3 features extractor fitted to the `CarlaPerception-v0` observation."""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

VECTOR_KEYS = ("ego_motion", "state", "route")


class PerceptionExtractor(BaseFeaturesExtractor):
    """Small CNN over the semantic + depth channels, MLP over the vectors, concatenated.

    The CNN is sized for the default 40x80 observation (NatureCNN's 8x8 stride-4 first layer
    throws away too much at this size): three stride-2 3x3 convolutions, then global pooling
    over a 2x4 grid so the policy keeps coarse left/right/near/far layout.
    """

    def __init__(
        self, observation_space: gym.spaces.Dict, cnn_channels: int = 32, vector_dim: int = 64, features_dim: int = 256
    ) -> None:
        super().__init__(observation_space, features_dim)
        semantic, depth = (
            cast(gym.spaces.Box, observation_space["semantic"]),
            cast(gym.spaces.Box, observation_space["depth"]),
        )
        image_channels = semantic.shape[0] + depth.shape[0]
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
        vector_in = sum(int(torch.tensor(observation_space[k].shape).prod()) for k in VECTOR_KEYS)
        self.mlp = nn.Sequential(nn.Linear(vector_in, vector_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * c * 8 + vector_dim, features_dim), nn.ReLU())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands uint8 image spaces over as floats already divided by 255 when normalize_images is on.
        image = torch.cat([obs["semantic"].float(), obs["depth"].float()], dim=1)
        vectors = torch.cat([obs[k].flatten(1).float() for k in VECTOR_KEYS], dim=1)
        return self.head(torch.cat([self.cnn(image), self.mlp(vectors)], dim=1))
