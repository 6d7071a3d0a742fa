"""A built town: road network, ground map and scenery, generated once per town and cached."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .ground import GroundMap, build_ground
from .network import Network, build_network
from .scenery import Scenery, build_scenery
from .towns import TownSpec, town_spec


@dataclass(frozen=True)
class World:
    """Everything static about a town; shared (read-only) by every backend that uses the town."""

    spec: TownSpec
    network: Network
    ground: GroundMap
    scenery: Scenery
    vertices: np.ndarray  # static scenery vertices (geometry.VERTEX)
    triangles: np.ndarray  # (T, 3) uint32 indices into `vertices`


@lru_cache(maxsize=4)
def _build(spec: TownSpec) -> World:
    net = build_network(spec)
    rng = np.random.default_rng(spec.seed + 1)
    ground = build_ground(spec, net, rng)
    scenery = build_scenery(spec, net, ground, rng)
    return World(spec, net, ground, scenery, *scenery.mesh.build())


def build_world(town: str | int) -> World:
    """The world of a named town or an integer seed (deterministic, cached per process)."""
    return _build(town_spec(town))
