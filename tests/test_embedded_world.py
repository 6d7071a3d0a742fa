"""The embedded world's camera: determinism, labels, depth consistent with the pose and the map."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from carla_gym.sim import Frame, make_backend
from carla_gym.sim.embedded.renderer import RenderError
from perception.conventions import CLASS_IDS, NUM_CLASSES, back_project_depth_map

SIZE = (64, 128)


def drive(backend, steps: int) -> list[Frame]:
    frames = [backend.reset(seed=7)]
    for _ in range(steps):
        frames.append(backend.step(backend.autopilot_control()))
    return frames


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    with make_backend("embedded", town="grid_suburb", size=SIZE, seed=0) as backend:
        return drive(backend, 12)


def test_same_seed_same_bytes(frames):
    with make_backend("embedded", town="grid_suburb", size=SIZE, seed=0) as backend:
        again = drive(backend, 12)
    for a, b in zip(frames, again, strict=False):
        assert a.rgb.tobytes() == b.rgb.tobytes()
        assert a.semantic.tobytes() == b.semantic.tobytes()
        assert a.depth.tobytes() == b.depth.tobytes()
        np.testing.assert_array_equal(a.camera_to_world, b.camera_to_world)
    # and the camera really moved, so the comparison covered different images
    assert np.linalg.norm(frames[-1].camera_to_world[:3, 3] - frames[0].camera_to_world[:3, 3]) > 1.0


def test_another_seed_differs(frames):
    with make_backend("embedded", town="grid_suburb", size=SIZE, seed=0) as backend:
        other = backend.reset(seed=8)
    assert other.rgb.tobytes() != frames[0].rgb.tobytes()


def test_frame_contents(frames):
    f = frames[-1]
    assert f.rgb.shape == (*SIZE, 3) and f.semantic.shape == SIZE and f.depth.shape == SIZE
    for fr in frames:
        assert int(fr.semantic.max()) < NUM_CLASSES
    labels = np.unique(np.concatenate([fr.semantic.ravel() for fr in frames]))
    for name in ("Road", "Sky", "Sidewalk", "Building"):
        assert CLASS_IDS[name] in labels, name
    sky = f.semantic == CLASS_IDS["Sky"]
    assert sky.any() and np.all(f.depth[sky] == 1000.0)
    assert np.all(f.depth[~sky] < 1000.0) and np.all(f.depth > 0.05)
    assert f.camera_to_world[2, 3] == pytest.approx(1.4)
    assert f.timestamp == pytest.approx(1.2) and f.frame == 12


def test_depth_matches_pose_and_ground(frames):
    """Road pixels back-projected with their depth through camera_to_world land on z = 0, on road cells."""
    with make_backend("embedded", town="grid_suburb", size=SIZE, seed=0, render=False) as b:
        backend_ground = b.world.ground
    for f in (frames[0], frames[-1]):
        pts = back_project_depth_map(f.depth, f.intrinsics)  # camera frame, (H, W, 3)
        world = pts @ f.camera_to_world[:3, :3].T + f.camera_to_world[:3, 3]
        road = f.semantic == CLASS_IDS["Road"]
        assert road.sum() > 200
        z = world[road][:, 2]
        assert np.abs(z).max() < 0.05, np.abs(z).max()
        cls = backend_ground.class_at(world[road][:, :2])
        assert np.isin(cls, (CLASS_IDS["Road"], CLASS_IDS["RoadLine"])).mean() > 0.97
        # Elevated things are above the ground: building pixels sit higher than 0.1 m on average.
        building = f.semantic == CLASS_IDS["Building"]
        if building.sum() > 20:
            assert world[building][:, 2].mean() > 1.0


def test_route_and_speed(frames):
    f = frames[-1]
    assert f.speed > 0.5
    wp = f.route.waypoints
    assert wp.shape == (10, 2) and wp[0, 0] > 0 and wp[-1, 0] > wp[0, 0]
    assert 0 < f.route.distance_left < f.route.length


def test_render_off_gives_valid_empty_frames():
    with make_backend("embedded", town="grid_suburb", size=SIZE, render=False) as backend:
        f = backend.reset(seed=1)
        f = backend.step(backend.autopilot_control())
    assert f.rgb.shape == (0, 0, 3) and f.depth.dtype == np.float32
    assert f.intrinsics[0, 2] == SIZE[1] / 2


def test_unusable_gl_context_names_the_libraries(monkeypatch):
    import moderngl

    def broken(*args, **kwargs):
        raise Exception("eglGetDisplay failed")

    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with pytest.raises(RenderError, match="libegl1") as err:  # the context is made by the first frame, in its process
        with make_backend("embedded", town="grid_suburb", size=SIZE) as backend:
            backend.reset(seed=0)
    assert "libgl1-mesa-dri" in str(err.value) and "eglGetDisplay failed" in str(err.value)


def test_weather_varies_by_seed_and_changes_the_image():
    from carla_gym.sim.embedded.weather import get_weather

    names = {get_weather(None, np.random.default_rng(s)).name for s in range(30)}
    assert len(names) >= 5
    means = {}
    for weather in ("clear_noon", "dusk"):
        with make_backend(
            "embedded", town="grid_suburb", size=(32, 64), weather=weather, vehicles=0, pedestrians=0
        ) as b:
            f = b.reset(seed=3)
        means[weather] = f.rgb.mean()
        labels = f.semantic
    assert means["dusk"] < means["clear_noon"] - 15
    with make_backend(
        "embedded", town="grid_suburb", size=(32, 64), weather="clear_noon", vehicles=0, pedestrians=0
    ) as b:
        assert np.array_equal(b.reset(seed=3).semantic, labels)  # labels do not depend on the weather


def test_chunk_culling_drops_nothing_in_view():
    """Drawing every static chunk changes no pixel nearer than the detail distance."""
    from carla_gym.sim.embedded.renderer import DETAIL_DISTANCE

    with make_backend("embedded", town="winding_hills", size=SIZE, vehicles=0, pedestrians=0) as b:
        for seed in (1, 2):
            f = b.reset(seed=seed, options={"weather": "clear_noon"})
            r = b.renderer
            culled = r.render(f.camera_to_world, {})
            every = [(int(a), int(c)) for a, c in r.chunk_ranges]
            r._visible_ranges = lambda cam, every=every: every
            full = r.render(f.camera_to_world, {})
            del r._visible_ranges
            near = full[2] < DETAIL_DISTANCE - 30.0
            assert near.mean() > 0.3
            np.testing.assert_array_equal(culled[1][near], full[1][near])
            np.testing.assert_array_equal(culled[2][near], full[2][near])


def test_torchvision_imports_after_a_simulator_exists():
    # Triton (loaded by torchvision through torch._dynamo) segfaults if it loads after Mesa's llvmpipe.
    code = (
        "from carla_gym.sim import make_backend\n"
        "b = make_backend('embedded', size=(32, 64), vehicles=0, pedestrians=0); b.reset(seed=0)\n"
        "import torchvision, torch._dynamo\n"
        "b.close(); print('alive')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "alive" in done.stdout, done.stderr[-2000:]
