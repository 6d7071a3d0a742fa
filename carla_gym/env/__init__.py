"""The `CarlaPerception-v0` Gymnasium environment."""

from .carla_perception_env import CarlaPerceptionEnv
from .config import EnvConfig
from .contracts import ENDINGS, Infraction, Termination, Truncation, control_to_action
from .emergency_brake import EmergencyBrakeConfig
from .observation import SEMANTIC_GROUPS, observation_space
from .reward import RewardConfig, target_speed
from .task import DISCRETE_ACTIONS, DrivingTask, action_to_control
from .vector import BatchedPerceptionVecEnv, CarlaPerceptionVectorEnv, make_vec

__all__ = [
    "DISCRETE_ACTIONS",
    "ENDINGS",
    "SEMANTIC_GROUPS",
    "BatchedPerceptionVecEnv",
    "CarlaPerceptionEnv",
    "CarlaPerceptionVectorEnv",
    "DrivingTask",
    "EmergencyBrakeConfig",
    "EnvConfig",
    "Infraction",
    "RewardConfig",
    "Termination",
    "Truncation",
    "action_to_control",
    "control_to_action",
    "make_vec",
    "observation_space",
    "target_speed",
]
