"""The CARLA 0.9.16 backend (needs the `carla` extra)."""

from .backend import CarlaBackend, CarlaConfig

__all__ = ["CarlaBackend", "CarlaConfig"]
