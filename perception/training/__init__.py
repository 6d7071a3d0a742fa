"""The perception training curriculum: configs, stages, the loop, checkpoints, evaluation, pictures.

Never imports `carla_gym`: data comes in as a folder of recorded clips.
"""

from .config import SCHEDULES, STAGE_NAMES, EpisodeData, StageConfig, TrainConfig, default_config
from .loop import TrainingError, earlier_stages, train

__all__ = [
    "SCHEDULES",
    "STAGE_NAMES",
    "EpisodeData",
    "StageConfig",
    "TrainConfig",
    "TrainingError",
    "default_config",
    "earlier_stages",
    "train",
]
