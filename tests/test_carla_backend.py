"""The CARLA backend's logic, against the in-process FAKE in tests/fake_carla.py (no server runs in CI)."""

import gc
from types import SimpleNamespace

import numpy as np
import pytest
from fake_carla import DEPTH_M, FakeServer, LaneMarkingType, WorldSettings, make_fake_carla

from carla_gym.sim import Control, EventKind, SimulatorError, make_backend
from carla_gym.sim.carla_backend import CarlaBackend, CarlaConfig
from carla_gym.sim.carla_backend.conversions import lane_invasion_events
from carla_gym.sim.carla_backend.sensor_queues import EventQueue, FrameQueue, SensorTimeout
from carla_gym.sim.carla_backend.session import sync_settings
from perception.conventions import CLASS_IDS


@pytest.fixture
def server():
    return FakeServer()


def backend_for(server, **options):
    options = {"size": (4, 32), "vehicles": 3, "walkers": 0, "timeout": 1.0, "reconnect_backoff": 0.0, **options}
    return CarlaBackend(CarlaConfig(**options), carla_module=make_fake_carla({server.address: server}))


def spawned_ids(server):
    return set(server.actors)


def test_reset_spawns_ego_sensors_traffic_and_sync_mode(server):
    with backend_for(server, town="Town02", seed=7) as sim:
        frame = sim.reset(seed=1)
        assert server.loaded == ["Town02"]
        assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == pytest.approx(0.1)
        assert server.tm_sync and server.tm_seed == 7
        types = sorted(a.type_id for a in server.actors.values())
        assert types.count("sensor.camera.rgb") == 1 and types.count("sensor.other.collision") == 1
        assert sum(t.startswith("vehicle.") for t in types) == 4  # ego + 3 NPCs
        npcs = [a for a in server.actors.values() if a.type_id.startswith("vehicle.") and a.autopilot]
        assert len(npcs) == 3 and all(a.autopilot == (True, 8000) for a in npcs)
        assert frame.rgb.shape == (4, 32, 3) and frame.frame == server.frame
    assert not server.actors and not server.settings.synchronous_mode and not server.tm_sync


def test_frame_conversion_of_real_bgra_layouts(server):
    with backend_for(server) as sim:
        frame = sim.reset(seed=0)
        assert frame.rgb[0, 0].tolist() == [200, 0, frame.frame % 256]  # BGRA (f, 0, 200) -> RGB
        # row of CARLA 0.9.14+ tags 0..28, 0..2 -> the 22-class remap
        expected = [
            0,
            7,
            8,
            1,
            11,
            2,
            5,
            18,
            12,
            9,
            14,
            13,
            4,
            4,
            10,
            10,
            10,
            10,
            10,
            10,
            19,
            20,
            3,
            21,
            6,
            14,
            15,
            16,
            17,
            0,
            7,
            8,
        ]
        assert frame.semantic[2].tolist() == expected
        assert np.allclose(frame.depth, DEPTH_M, atol=1e-4)
        assert frame.camera_to_world[0, 3] == pytest.approx(frame.transform[0, 3] + 1.6)  # camera mount
        assert frame.camera_to_world[2, 3] == pytest.approx(frame.transform[2, 3] + 1.4)


@pytest.mark.parametrize("mode", ["late_sensors", "resend_stale"])
def test_each_tick_gets_its_own_images_when_callbacks_are_late_or_out_of_order(server, mode):
    setattr(server, mode, True)
    with backend_for(server) as sim:
        sim.reset(seed=0)
        for _ in range(5):
            frame = sim.step(Control(throttle=1.0))
            assert frame.frame == server.frame
            assert frame.rgb[0, 0, 2] == frame.frame % 256  # the pixels of this tick, not an older one


def test_control_reaches_the_ego_and_route_progresses(server):
    with backend_for(server, route_length=100.0) as sim:
        first = sim.reset(seed=0)
        ego = next(a for a in server.actors.values() if a.attributes.get("role_name") == "hero")
        for _ in range(10):
            frame = sim.step(Control(throttle=0.5, steer=0.1))
        assert ego.controls[-1].throttle == 0.5 and ego.controls[-1].steer == pytest.approx(0.1)
        assert frame.speed == pytest.approx(5.0)
        assert first.route.distance_left - frame.route.distance_left == pytest.approx(5.0, abs=0.1)
        assert frame.route.waypoints[0].tolist() == pytest.approx([2.0, 0.0])


def test_collision_event_carries_the_other_class(server):
    with backend_for(server) as sim:
        sim.reset(seed=0)
        npc = next(a for a in server.actors.values() if a.type_id.startswith("vehicle.") and a.autopilot)
        server.pending_collisions.append(npc)
        frame = sim.step(Control())
        (event,) = [e for e in frame.events if e.kind is EventKind.COLLISION]
        assert event.other_class == CLASS_IDS["Vehicles"] and event.category == "vehicle"
        assert event.intensity == pytest.approx(500.0)
        assert not sim.step(Control()).has(EventKind.COLLISION)


def test_lane_markings_become_solid_or_dashed():
    event = SimpleNamespace(
        crossed_lane_markings=[
            SimpleNamespace(type=LaneMarkingType.Broken),
            SimpleNamespace(type=LaneMarkingType.SolidSolid),
            SimpleNamespace(type=LaneMarkingType.Curb),
        ]
    )
    assert [e.detail for e in lane_invasion_events(event)] == ["dashed", "solid"]


def test_resets_do_not_leak_actors(server):
    with backend_for(server) as sim:
        sim.reset(seed=0)
        count = len(server.actors)
        for seed in range(1, 6):
            sim.reset(seed=seed)
            assert len(server.actors) == count
    assert not server.actors


def test_exception_mid_reset_cleans_up_everything(server):
    server.fail_spawn_after = 3  # ego and two cameras spawn, the depth camera fails
    sim = backend_for(server)
    with pytest.raises(RuntimeError, match="Spawn failed"):
        sim.reset(seed=0)
    assert not server.actors and len(server.destroyed) == 3
    sim.close()
    assert not server.settings.synchronous_mode


def test_walkers_get_controllers_that_are_stopped_on_close(server):
    with backend_for(server, walkers=2) as sim:
        sim.reset(seed=0)
        controllers = [a for a in server.actors.values() if a.type_id == "controller.ai.walker"]
        assert len(controllers) == 2 and controllers[0].controller_calls[:2] == ["start", "go_to_location"]
    assert controllers[0].controller_calls[-1] == "stop" and not server.actors


def test_garbage_collected_backend_restores_the_server(server):
    sim = backend_for(server)
    sim.reset(seed=0)
    del sim
    gc.collect()
    assert not server.actors and not server.settings.synchronous_mode and not server.tm_sync


def test_no_server_names_host_and_port():
    fake = make_fake_carla({})
    with pytest.raises(ConnectionError, match="no CARLA server answered at localhost:2010"):
        CarlaBackend(CarlaConfig(port=2010, timeout=0.5), carla_module=fake)


def test_version_mismatch_warns_with_both_versions():
    server = FakeServer(version="0.9.15")
    with pytest.warns(UserWarning, match=r"0\.9\.15 .* 0\.9\.16"):
        backend_for(server).close()


def test_tick_timeout_is_a_simulator_error_and_reset_reconnects(server):
    sim = backend_for(server)
    sim.reset(seed=0)
    server.hang = True
    with pytest.raises(SimulatorError, match="localhost:2000.*time-out"):
        sim.step(Control())
    server.hang = False
    frame = sim.reset(seed=0)  # reconnects, respawns
    assert frame.frame == server.frame
    sim.close()
    assert not server.settings.synchronous_mode


def test_lost_server_fails_reconnect_after_bounded_attempts(server):
    sim = backend_for(server, reconnect_attempts=2)
    sim.reset(seed=0)
    server.running = False
    with pytest.raises(SimulatorError):
        sim.step(Control())
    with pytest.raises(SimulatorError, match="could not reconnect after 2 attempts.*localhost:2000"):
        sim.reset(seed=0)


def test_parallel_backends_use_their_own_ports():
    a, b = FakeServer(port=2000), FakeServer(port=2004)
    fake = make_fake_carla({a.address: a, b.address: b})
    sims = [
        CarlaBackend(CarlaConfig(port=p, size=(4, 8), vehicles=0, walkers=0), carla_module=fake) for p in (2000, 2004)
    ]
    for sim in sims:
        sim.reset(seed=0)
    assert sims[1]._tm_port == 8004 and len(a.actors) == len(b.actors) == 6
    for sim in sims:
        sim.close()


def test_frame_queue_matches_frames_and_times_out():
    queue = FrameQueue("rgb")
    for f in (12, 10, 11):
        queue.put(SimpleNamespace(frame=f))
    assert queue.get(11, timeout=0.1).frame == 11
    with pytest.raises(SensorTimeout, match="rgb sensor sent no data for frame 10"):
        queue.get(10, timeout=0.05)  # dropped as stale once frame 11 was taken
    assert queue.get(12, timeout=0.1).frame == 12
    events = EventQueue()
    for f in (5, 3, 7):
        events.put(SimpleNamespace(frame=f))
    assert [e.frame for e in events.take(5)] == [3, 5] and [e.frame for e in events.take(9)] == [7]


@pytest.mark.parametrize("delta, substeps", [(0.1, 10), (0.05, 5), (0.2, 16), (0.5, 16)])
def test_substepping_satisfies_carla_bound(delta, substeps):
    s = sync_settings(WorldSettings(), delta)
    assert s.synchronous_mode and s.max_substeps == substeps
    assert s.fixed_delta_seconds <= s.max_substep_delta_time * s.max_substeps + 1e-12
    with pytest.raises(ValueError, match="fixed_delta_seconds"):
        sync_settings(WorldSettings(), 0.0)


def test_make_backend_checks_carla_options():
    with pytest.raises(TypeError, match="unknown option 'prot' for the 'carla' backend; known options: .*port"):
        make_backend("carla", prot=2000)


def test_real_client_without_server_fails_fast_naming_host_and_port():
    pytest.importorskip("carla")
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"no CARLA server answered at 127.0.0.1:{port}"):
        CarlaBackend(CarlaConfig(host="127.0.0.1", port=port, tm_port=8000, timeout=0.5))


def test_collect_records_clips_through_the_carla_backend(tmp_path, monkeypatch, server):
    from carla_gym import collect
    from carla_gym.sim.carla_backend import backend as carla_backend_module
    from perception.data import ClipStore

    monkeypatch.setattr(carla_backend_module, "_import_carla", lambda: make_fake_carla({server.address: server}))
    args = [
        "--backend",
        "carla",
        "--towns",
        "Town02",
        "--clips",
        "2",
        "--frames",
        "3",
        "--size",
        "4x32",
        "--warmup",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert collect.main(args) == 0
    clips = ClipStore(tmp_path).clips(split="test")
    assert [len(c) for c in clips] == [3, 3] and clips[0].meta.backend == "carla"
    assert clips[0].frame(0)["semantic"].max() < 22
    assert server.loaded == ["Town02"] and not server.actors and not server.settings.synchronous_mode


def test_env_on_carla_truncates_on_a_lost_tick_and_recovers(monkeypatch, server):
    import gymnasium as gym

    import carla_gym  # noqa: F401
    from carla_gym.sim.carla_backend import backend as carla_backend_module

    monkeypatch.setattr(carla_backend_module, "_import_carla", lambda: make_fake_carla({server.address: server}))
    env = gym.make(
        "CarlaPerception-v0",
        backend="carla",
        perception="ground_truth",
        camera_size=(8, 32),
        obs_size=(4, 8),
        vehicles=2,
        walkers=0,
        timeout=0.5,
        reconnect_backoff=0.0,
    )
    try:
        env.reset(seed=0)
        _, _, terminated, truncated, _ = env.step(np.array([0.0, 0.5]))
        assert not (terminated or truncated)
        server.hang = True
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.5]))
        assert truncated and not terminated and reward == 0.0
        assert info["truncation"] == "simulator_fault" and "time-out" in info["error"]
        assert env.observation_space.contains(obs)
        server.hang = False
        env.reset(seed=1)  # reconnects and respawns
        assert not env.step(np.array([0.0, 0.5]))[3]
    finally:
        env.close()
    assert not server.actors and not server.settings.synchronous_mode


def test_make_vec_gives_each_carla_world_its_own_server():
    from carla_gym.env.vector import world_options

    ports = [world_options("carla", i, "test", {"port": 3000})["port"] for i in range(3)]
    assert ports == [3000, 3004, 3008]
    assert world_options("carla", 1, None, {})["port"] == 2004
    assert world_options("carla", 0, "test", {})["town"] == "Town02"
    assert "port" not in world_options("embedded", 1, None, {})


def test_train_perception_records_through_the_carla_backend(tmp_path, monkeypatch, server):
    from carla_gym import train_perception, training_data
    from carla_gym.sim.carla_backend import backend as carla_backend_module

    monkeypatch.setattr(carla_backend_module, "_import_carla", lambda: make_fake_carla({server.address: server}))
    monkeypatch.setattr(training_data, "default_root", lambda: tmp_path / "cache")
    out = tmp_path / "run"
    code = train_perception.main(
        ["--profile", "smoke", "--backend", "carla", "--port", "2000", "--out", str(out), "--no-eval"]
    )
    assert code in (0, None)
    assert (out / "weights" / "model.safetensors").is_file()
    recorded = sorted(p.name for p in (tmp_path / "cache").glob("carla-*/*"))
    assert recorded == sorted(["Town01", "Town03", "Town04", "Town05", "Town06", "Town07", "Town10HD", "Town02"])
    assert not server.actors and not server.settings.synchronous_mode
