"""Options shared by the env and the backends have one default, and the ground map is built by small steps.

A backend made directly (`make_backend`) must drive the same episode as the env's world with the env's
defaults, so the two configs may not drift apart.
"""

import numpy as np
import pytest

from carla_gym.env.config import EnvConfig
from carla_gym.sim import make_backend
from carla_gym.sim.carla_backend.backend import CarlaConfig
from carla_gym.sim.embedded import ground
from carla_gym.sim.embedded.backend import EmbeddedConfig
from carla_gym.sim.embedded.network import build_network
from carla_gym.sim.embedded.towns import town_spec


def _env() -> EnvConfig:
    return EnvConfig(perception="ground_truth")


@pytest.mark.parametrize("config", [EmbeddedConfig, CarlaConfig])
def test_backend_defaults_are_the_env_defaults(config):
    backend, env = config(), _env()
    assert backend.size == env.camera_size
    assert backend.route_length == env.route_length


def test_env_world_options_change_nothing_in_a_default_embedded_config():
    assert EmbeddedConfig(**_env().world_options(0)) == EmbeddedConfig()


def test_both_backends_share_camera_and_tick_defaults():
    e, c = EmbeddedConfig(), CarlaConfig()
    assert (e.fov, e.fixed_delta_seconds) == (c.fov, c.fixed_delta_seconds)
    assert (e.camera_forward, e.camera_height) == (c.camera_location[0], c.camera_location[2])


def test_default_backend_drives_the_env_worlds_episode():
    """Route length decides how many lanes the route draws, hence the traffic drawn after it."""
    options = {k: v for k, v in _env().world_options(0).items() if k != "size"}
    with make_backend("embedded", render=False) as default, make_backend("embedded", render=False, **options) as env:
        default.reset(seed=3)
        env.reset(seed=3)
        np.testing.assert_array_equal(default.tracker.points, env.tracker.points)
        np.testing.assert_array_equal(default.traffic.xy, env.traffic.xy)


# A town without water or rail, one with an inland lake (a random draw) and one with a quay and rail.
@pytest.mark.parametrize("town", ["offset_downtown", 5, "harbour_district"])
def test_build_ground_draws_one_variant_per_road_and_one_angle_per_lake(town):
    """The scenery is drawn from the generator after the ground, so the ground's draws are part of a town."""
    spec = town_spec(town)
    net = build_network(spec)
    rng = np.random.default_rng(spec.seed + 1)
    g = ground.build_ground(spec, net, rng)
    expected = np.random.default_rng(spec.seed + 1)
    for _ in net.roads:
        expected.integers(0, 4)
    lake = spec.water and spec.layout not in ("ladder", "ring")
    if lake:
        expected.uniform(0, 180)
    assert rng.bit_generator.state == expected.bit_generator.state
    assert (g.water_edge is not None) == (spec.water and not lake)
    assert (g.cls == ground.WATER).any() == spec.water
    assert (g.rail_y is not None) == spec.rail
