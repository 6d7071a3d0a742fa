"""carla-perception-gym: driving environments seen through learned temporal perception.

Importing the package registers `CarlaPerception-v0` (continuous steer/acceleration) and
`CarlaPerceptionDiscrete-v0` with Gymnasium; `gym.make("carla_gym:CarlaPerception-v0")` imports
it for you.
"""

from importlib.metadata import PackageNotFoundError, version

import gymnasium as gym

try:
    __version__ = version("carla-perception-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

for _id, _kwargs in (("CarlaPerception-v0", {}), ("CarlaPerceptionDiscrete-v0", {"discrete": True})):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="carla_gym.env:CarlaPerceptionEnv", kwargs=_kwargs, max_episode_steps=1000)



def make_vec(num_envs: int, **kwargs):
    """n `CarlaPerception-v0` worlds with one batched perception pass, as an SB3 VecEnv (see `carla_gym.env.make_vec`)."""
    from .env.vector import make_vec as _make_vec

    return _make_vec(num_envs, **kwargs)


__all__ = ["__version__", "make_vec"]
