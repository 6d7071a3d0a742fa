"""carla-perception-gym: driving environments seen through learned temporal perception.

Importing the package registers `CarlaPerception-v0` (continuous steer/acceleration) and
`CarlaPerceptionDiscrete-v0` with Gymnasium; `gym.make("carla_gym:CarlaPerception-v0")` imports
it for you. Both have a vector entry point: `gym.make_vec("CarlaPerception-v0", num_envs=n)` is a
Gymnasium `VectorEnv` whose worlds step in worker processes and whose perception runs as one batch
(`carla_gym.env.vector.CarlaPerceptionVectorEnv`); `carla_gym.make_vec` is the same as an SB3 VecEnv.
"""

from importlib.metadata import PackageNotFoundError, version

import gymnasium as gym

try:
    __version__ = version("carla-perception-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

for _id, _kwargs in (("CarlaPerception-v0", {}), ("CarlaPerceptionDiscrete-v0", {"discrete": True})):
    if _id not in gym.registry:
        gym.register(
            id=_id,
            entry_point="carla_gym.env:CarlaPerceptionEnv",
            kwargs=_kwargs,
            max_episode_steps=1000,
            vector_entry_point="carla_gym.env.vector:CarlaPerceptionVectorEnv",
        )


def make_vec(num_envs: int, config=None, **kwargs):
    """n `CarlaPerception-v0` worlds with one batched perception pass, as an SB3 VecEnv (see `carla_gym.env.make_vec`)."""
    from .env.vector import make_vec as _make_vec

    return _make_vec(num_envs, config, **kwargs)


def __getattr__(name: str):
    """`carla_gym.EnvConfig`, imported on first use so that importing the package stays light."""
    if name == "EnvConfig":
        from .env.config import EnvConfig

        return EnvConfig
    raise AttributeError(f"module 'carla_gym' has no attribute {name!r}")


__all__ = ["EnvConfig", "__version__", "make_vec"]
