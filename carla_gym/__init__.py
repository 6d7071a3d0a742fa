"""carla-perception-gym: driving environments seen through learned temporal perception."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carla-perception-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
