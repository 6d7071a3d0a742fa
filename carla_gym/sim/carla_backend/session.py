"""What this client changed on a CARLA server, and how to undo it.

A `ServerSession` owns the connection, the world settings it replaced and every actor it spawned,
so that `close()` (called by the backend, on an exception, or at interpreter exit) can leave the
server as it found it: sensors stopped and destroyed, walkers' controllers stopped, every spawned
actor destroyed, asynchronous mode restored and the traffic manager out of synchronous mode. A
server left in synchronous mode waits forever for a tick that never comes.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

# Checks host:port before the `carla` client is pointed at it (see `probe.probe_server`).
Probe = Callable[[str, int, float], Any]

log = logging.getLogger(__name__)

# CARLA refuses more than 16 physics substeps per tick.
_MAX_SUBSTEPS = 16


def sync_settings(settings: Any, fixed_delta_seconds: float) -> Any:
    """Synchronous mode with a fixed step and physics substepping that satisfies CARLA's bound.

    CARLA requires `fixed_delta_seconds <= max_substep_delta_time * max_substeps` with at most 16
    substeps; substeps of at most 10 ms keep the vehicle physics stable.
    """
    if not 0.0 < fixed_delta_seconds <= 0.5:
        raise ValueError(f"fixed_delta_seconds must lie in (0, 0.5] for stable physics, got {fixed_delta_seconds}")
    substeps = min(_MAX_SUBSTEPS, max(1, math.ceil(fixed_delta_seconds / 0.01 - 1e-9)))
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = fixed_delta_seconds
    settings.substepping = True
    settings.max_substep_delta_time = fixed_delta_seconds / substeps
    settings.max_substeps = substeps
    return settings


class ServerSession:
    """A connection to one CARLA server and everything this client created or changed on it."""

    def __init__(self, carla: Any, host: str, port: int, timeout: float, probe: Probe | None = None) -> None:
        """Connect to the server at host:port; every failure is a ConnectionError naming host:port.

        `probe`, when given, runs first and raises ConnectionError for a host:port where the `carla`
        client must not go (one where it would abort the process)."""
        self.carla = carla
        self.where = f"{host}:{port}"
        if probe is not None:
            probe(host, port, timeout)
        try:
            self.client = carla.Client(host, port)
            self.client.set_timeout(timeout)
            server_version = self.client.get_server_version()
        except (RuntimeError, OverflowError, ValueError, TypeError) as err:
            raise ConnectionError(
                f"no CARLA server answered at {self.where} within {timeout:g} s ({err}). Start one with "
                f"`./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}` or pass host=/port= of a running server."
            ) from None
        client_version = self.client.get_client_version()
        if server_version.split("-")[0] != client_version.split("-")[0]:
            warnings.warn(
                f"CARLA server {server_version} at {self.where} and client package {client_version} differ; "
                "this backend is tested with 0.9.16 on both sides",
                stacklevel=3,
            )
        self.server_version = server_version
        self.world: Any = None
        self.traffic_manager: Any = None
        self.original_settings: Any = None
        self.sensors: list[Any] = []
        self.walker_controllers: list[Any] = []
        self.actor_ids: list[int] = []
        self.closed = False

    def open_world(self, town: str | None, fixed_delta_seconds: float, tm_port: int, seed: int | None) -> Any:
        """Load `town` if another map is running, then switch it and the traffic manager to synchronous mode."""
        world = self.client.get_world()
        if town and world.get_map().name.rsplit("/", 1)[-1] != town:
            world = self.client.load_world(town)
        self.world = world
        self.original_settings = world.get_settings()
        world.apply_settings(sync_settings(world.get_settings(), fixed_delta_seconds))
        self.traffic_manager = self.client.get_trafficmanager(tm_port)
        self.traffic_manager.set_synchronous_mode(True)
        if seed is not None:
            self.traffic_manager.set_random_device_seed(seed)
            world.set_pedestrians_seed(seed)
        return world

    def track(self, actor: Any) -> Any:
        """Remember a spawned actor (sensors and walker controllers get special care on cleanup)."""
        type_id = getattr(actor, "type_id", "")
        if type_id.startswith("sensor."):
            self.sensors.append(actor)
        elif type_id.startswith("controller."):
            self.walker_controllers.append(actor)
        else:
            self.actor_ids.append(actor.id)
        return actor

    def destroy_actors(self) -> None:
        """Stop and destroy every actor this session spawned, sensors and controllers first."""
        for sensor in self.sensors:
            try:
                if sensor.is_listening:
                    sensor.stop()
                sensor.destroy()
            except RuntimeError as err:
                log.warning("could not destroy sensor %s: %s", getattr(sensor, "id", "?"), err)
        for controller in self.walker_controllers:
            try:
                controller.stop()
                controller.destroy()
            except RuntimeError as err:
                log.warning("could not destroy walker controller: %s", err)
        if self.actor_ids:
            destroy = self.carla.command.DestroyActor
            try:
                self.client.apply_batch_sync([destroy(i) for i in self.actor_ids], False)
            except RuntimeError as err:
                log.warning("could not destroy %d actors on %s: %s", len(self.actor_ids), self.where, err)
        self.sensors, self.walker_controllers, self.actor_ids = [], [], []

    def close(self) -> None:
        """Destroy every spawned actor and restore the world settings; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.destroy_actors()
        try:
            if self.traffic_manager is not None:
                self.traffic_manager.set_synchronous_mode(False)
            if self.world is not None and self.original_settings is not None:
                self.world.apply_settings(self.original_settings)
        except RuntimeError as err:
            log.warning("could not restore the world settings on %s: %s", self.where, err)
