"""The `CarlaPerception-v0` Gymnasium environment."""

from .carla_perception_env import CarlaPerceptionEnv
from .config import EnvConfig
from .observation import SEMANTIC_GROUPS, observation_space
from .reward import RewardConfig, target_speed
from .task import DISCRETE_ACTIONS, DrivingTask, action_to_control
from .vector import BatchedPerceptionVecEnv, CarlaPerceptionVectorEnv, make_vec

__all__ = [
    "DISCRETE_ACTIONS",
    "SEMANTIC_GROUPS",
    "BatchedPerceptionVecEnv",
    "CarlaPerceptionEnv",
    "CarlaPerceptionVectorEnv",
    "DrivingTask",
    "EnvConfig",
    "RewardConfig",
    "action_to_control",
    "make_vec",
    "observation_space",
    "target_speed",
]
