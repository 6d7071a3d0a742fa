"""Temporal perception for driving: CARLA conventions, models, streaming inference, metrics, training.

This package is the bottom layer: it never imports `carla_gym` or `agents`.
"""

from . import conventions
from .conventions import CLASS_NAMES, NUM_CLASSES, colorize

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "colorize", "conventions"]
