"""Thread-safe hand-over of sensor data from CARLA's callback threads, matched by frame number.

CARLA calls sensor callbacks on its own threads, late and sometimes out of order. A synchronous
client must use, for every tick, the data whose `frame` equals that tick's frame number, never
"the latest image".
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..contract import SimulatorError


class SensorTimeout(SimulatorError):
    """A sensor sent nothing for a tick's frame within the timeout."""


class FrameQueue:
    """Holds a camera's measurements by frame number until the client asks for one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[int, Any] = {}
        self._cond = threading.Condition()

    def put(self, data: Any) -> None:
        """Sensor callback: store a measurement (anything with a `frame` attribute)."""
        with self._cond:
            self._items[int(data.frame)] = data
            self._cond.notify_all()

    def get(self, frame: int, timeout: float) -> Any:
        """The measurement of `frame`, waiting up to `timeout` seconds; older ones are dropped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while frame not in self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    have = sorted(self._items)
                    raise SensorTimeout(
                        f"the {self.name} sensor sent no data for frame {frame} within {timeout:g} s "
                        f"(it holds frames {have[:5] if have else 'none'})"
                    )
                self._cond.wait(remaining)
            data = self._items.pop(frame)
            for stale in [f for f in self._items if f < frame]:
                del self._items[stale]
            return data

    def clear(self) -> None:
        with self._cond:
            self._items.clear()


class EventQueue:
    """Collects event-sensor callbacks (collisions, lane invasions), which fire only on some ticks."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def put(self, event: Any) -> None:
        with self._lock:
            self._items.append(event)

    def take(self, up_to_frame: int) -> list[Any]:
        """Remove and return the events of frames up to and including `up_to_frame`, in frame order."""
        with self._lock:
            taken = sorted((e for e in self._items if e.frame <= up_to_frame), key=lambda e: e.frame)
            self._items = [e for e in self._items if e.frame > up_to_frame]
        return taken

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
