"""Simulator backends behind one contract: the built-in embedded world and a CARLA 0.9.16 server."""

from .contract import Control, Event, EventKind, Frame, Hazards, Route, SimulatorBackend, SimulatorError
from .registry import BACKENDS, backend_class, make_backend


def __getattr__(name: str):  # the backend classes load on first use (CarlaBackend needs no `carla` until built)
    if name == "CarlaBackend":
        from .carla_backend import CarlaBackend

        return CarlaBackend
    if name == "EmbeddedBackend":
        from .embedded.backend import EmbeddedBackend

        return EmbeddedBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "CarlaBackend",
    "Control",
    "EmbeddedBackend",
    "Event",
    "EventKind",
    "Frame",
    "Hazards",
    "Route",
    "SimulatorBackend",
    "SimulatorError",
    "backend_class",
    "make_backend",
]
