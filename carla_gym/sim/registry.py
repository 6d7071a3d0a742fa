"""Build a simulator backend by name, checking its options against the backend's config dataclass."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from .contract import SimulatorBackend

# name -> "module:class"; modules are imported only when their backend is built, so the `carla`
# package is needed only for `make_backend("carla")`.
BACKENDS: dict[str, str] = {
    "embedded": "carla_gym.sim.embedded.backend:EmbeddedBackend",
    "carla": "carla_gym.sim.carla_backend:CarlaBackend",
}


def backend_class(name: str) -> type[SimulatorBackend]:
    """The backend class registered under `name`; an unknown name lists the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown simulator backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and not err.name.startswith("carla_gym"):
            raise
        raise NotImplementedError(
            f"the {name!r} backend is not available in this version of carla-perception-gym"
        ) from err
    return getattr(module, class_name)


def make_backend(name: str = "embedded", **options: Any) -> SimulatorBackend:
    """Build the backend `name` ("embedded" or "carla") with keyword `options`.

    Options are the fields of the backend's `Config` dataclass; an unknown option is an error
    that lists the known ones.
    """
    cls = backend_class(name)
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for the {name!r} backend; "
            f"known options: {', '.join(sorted(known))}"
        )
    return cls(cls.Config(**options))  # type: ignore[call-arg]  # every backend takes its Config; the base class has no __init__
