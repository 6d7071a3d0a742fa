"""Lighting and weather: sun direction and colour, ambient light, sky colours, fog."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Weather:
    """Everything the shaders need to light a frame. Colours are linear RGB in [0, 1]."""

    name: str
    sun_elevation: float  # degrees above the horizon
    sun_azimuth: float  # degrees, CARLA yaw convention (from +x towards +y)
    sun_colour: tuple[float, float, float]
    ambient: tuple[float, float, float]
    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]
    fog_colour: tuple[float, float, float]
    fog_density: float  # 1/m; visibility ~ 3 / density
    grass: tuple[float, float, float] = (0.33, 0.42, 0.2)

    @property
    def sun_direction(self) -> np.ndarray:
        """Unit vector towards the sun in world coordinates (z up)."""
        el, az = math.radians(self.sun_elevation), math.radians(self.sun_azimuth)
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


PRESETS: dict[str, Weather] = {
    w.name: w
    for w in (
        Weather(
            "clear_noon",
            65,
            30,
            (0.95, 0.92, 0.85),
            (0.42, 0.45, 0.5),
            (0.25, 0.45, 0.8),
            (0.7, 0.8, 0.92),
            (0.75, 0.8, 0.88),
            0.0015,
        ),
        Weather(
            "clear_morning",
            25,
            120,
            (1.0, 0.85, 0.65),
            (0.38, 0.4, 0.48),
            (0.3, 0.5, 0.8),
            (0.85, 0.8, 0.75),
            (0.8, 0.78, 0.75),
            0.002,
            grass=(0.3, 0.4, 0.18),
        ),
        Weather(
            "cloudy",
            45,
            200,
            (0.55, 0.55, 0.55),
            (0.55, 0.56, 0.6),
            (0.55, 0.6, 0.68),
            (0.78, 0.8, 0.83),
            (0.7, 0.72, 0.75),
            0.003,
            grass=(0.3, 0.38, 0.2),
        ),
        Weather(
            "overcast",
            50,
            0,
            (0.2, 0.2, 0.21),
            (0.62, 0.63, 0.65),
            (0.6, 0.62, 0.65),
            (0.72, 0.73, 0.75),
            (0.66, 0.67, 0.69),
            0.006,
            grass=(0.28, 0.35, 0.22),
        ),
        Weather(
            "dusk",
            6,
            260,
            (1.0, 0.55, 0.3),
            (0.25, 0.23, 0.32),
            (0.18, 0.2, 0.42),
            (0.95, 0.55, 0.35),
            (0.55, 0.4, 0.38),
            0.004,
            grass=(0.25, 0.3, 0.15),
        ),
        Weather(
            "foggy",
            35,
            80,
            (0.35, 0.35, 0.33),
            (0.55, 0.56, 0.58),
            (0.7, 0.72, 0.74),
            (0.78, 0.79, 0.8),
            (0.76, 0.77, 0.78),
            0.025,
            grass=(0.3, 0.37, 0.22),
        ),
        Weather(
            "dry_summer",
            55,
            330,
            (1.0, 0.95, 0.8),
            (0.45, 0.45, 0.45),
            (0.3, 0.5, 0.85),
            (0.8, 0.82, 0.85),
            (0.8, 0.8, 0.8),
            0.002,
            grass=(0.5, 0.47, 0.25),
        ),
    )
}


def random_weather(rng: np.random.Generator) -> Weather:
    """A preset with its sun azimuth, elevation and fog jittered."""
    base = PRESETS[list(PRESETS)[int(rng.integers(0, len(PRESETS)))]]
    return replace(
        base,
        sun_azimuth=float((base.sun_azimuth + rng.uniform(-90, 90)) % 360),
        sun_elevation=float(np.clip(base.sun_elevation + rng.uniform(-8, 8), 3, 85)),
        fog_density=float(base.fog_density * rng.uniform(0.7, 1.4)),
    )


def get_weather(weather: str | None, rng: np.random.Generator) -> Weather:
    """A named preset, or a random one drawn from `rng` when `weather` is None."""
    if weather is None:
        return random_weather(rng)
    if weather not in PRESETS:
        raise ValueError(f"unknown weather {weather!r}; presets: {', '.join(PRESETS)} (or None for random by seed)")
    return PRESETS[weather]
