"""Simulator backends behind one contract: the built-in embedded world and a CARLA 0.9.16 server."""

from .contract import Control, Event, EventKind, Frame, Route, SimulatorBackend, SimulatorError
from .registry import BACKENDS, backend_class, make_backend

__all__ = [
    "BACKENDS", "Control", "Event", "EventKind", "Frame", "Route", "SimulatorBackend", "SimulatorError",
    "backend_class", "make_backend",
]
