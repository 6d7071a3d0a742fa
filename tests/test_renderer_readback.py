"""The renderer's frame pipeline: the sky drawn last, merged chunk ranges and the per-phase timings
give exactly the frame of the plain pipeline (sky painted first, every target read with fbo.read)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_gym.sim import make_backend
from carla_gym.sim.embedded.renderer import PHASES, Renderer

SIZE = (48, 96)


def camera(x: float, y: float, z: float, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """camera_to_world with columns forward, right, up (CARLA's axes) for a yaw and an upward pitch."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = fwd, right, np.cross(fwd, right), (x, y, z)
    return m


def plain_frame(
    r: Renderer, cam: np.ndarray, actors: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Redraw the frame `r.render(cam, actors)` just drew (its uniforms, chunk ranges and instances are still set), the
    plain way: every target cleared to a value no draw writes, the sky painted first without a depth test,
    then the geometry, each target read back with fbo.read into fresh bytes."""
    import moderngl

    ctx, h, w = r.ctx, r.height, r.width
    r.fbo.use()
    ctx.viewport = (0, 0, w, h)
    r.fbo.clear(0.5, 0.5, 0.5, 0.5, depth=1.0)
    ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
    r.sky_vao.render(moderngl.TRIANGLES, vertices=3)
    ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
    ctx.depth_func = "<"
    r.ground_tex.use(0)
    r.ground_vao.render(moderngl.TRIANGLES)
    n_ranges = len(r._visible_ranges(cam))
    if n_ranges:
        r.static_vao.render_indirect(r._indirect, moderngl.TRIANGLES, count=n_ranges)
    for name, inst in actors.items():
        if len(inst):
            r.actor_vaos[name].render(moderngl.TRIANGLES, instances=len(inst))
    rgb = np.frombuffer(r.fbo.read(components=3, attachment=0, alignment=1), np.uint8).reshape(h, w, 3)
    labels = np.frombuffer(r.fbo.read(components=1, attachment=1, alignment=1), np.uint8).reshape(h, w)
    depth = np.frombuffer(r.fbo.read(components=1, attachment=2, alignment=1, dtype="f4"), np.float32).reshape(h, w)
    return rgb, labels, depth


@pytest.fixture(scope="module")
def scene():
    """A backend in grid_suburb after some autopilot steps, and the actors of its last frame."""
    with make_backend("embedded", town="grid_suburb", size=SIZE, seed=0) as backend:
        r = backend.renderer
        seen: dict = {}
        render = r.render
        r.render = lambda cam, actors: seen.update(cam=cam, actors=actors) or render(cam, actors)
        backend.reset(seed=3)
        for _ in range(8):
            backend.step(backend.autopilot_control())
        del r.render
        yield backend, seen["cam"], seen["actors"]


def poses(backend, ego_cam: np.ndarray) -> dict[str, np.ndarray]:
    x0, y0, x1, y1 = backend.world.ground.extent
    return {
        "ego": ego_cam,
        "across the town from a corner": camera(x0 + 1.0, y0 + 1.0, 2.0, 45.0),
        "pitched up at the sky": camera(0.5 * (x0 + x1), 0.5 * (y0 + y1), 1.5, 10.0, 25.0),
        "pitched down": camera(0.5 * (x0 + x1), 0.5 * (y0 + y1), 30.0, 0.0, -60.0),
    }


@pytest.mark.parametrize("pose", ["ego", "across the town from a corner", "pitched up at the sky", "pitched down"])
def test_render_equals_the_plain_pipeline(scene, pose):
    backend, ego_cam, actors = scene
    r = backend.renderer
    cam = poses(backend, ego_cam)[pose]
    frame = r.render(cam, actors)
    reference = plain_frame(r, cam, actors)
    for got, want, name in zip(frame, reference, ("rgb", "labels", "depth"), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.flags.c_contiguous and got.flags.writeable, name
        assert got.tobytes() == want.tobytes(), f"{pose}: {name} differs in {int((got != want).sum())} values"
    sky = frame[1] == 13
    assert 0 < sky.sum() < sky.size or pose == "pitched down"  # the poses show both sky and ground
    assert not sky.any() or pose != "pitched down"


def test_timings_record_every_phase_and_change_nothing(scene):
    backend, cam, actors = scene
    r = backend.renderer
    plain = r.render(cam, actors)
    r.timings = {}
    try:
        timed = r.render(cam, actors)
        assert set(r.timings) == set(PHASES)
        assert all(v >= 0.0 for v in r.timings.values())
    finally:
        r.timings = None
    for a, b in zip(plain, timed, strict=True):
        assert a.tobytes() == b.tobytes()


def bare_renderer(centres: list[tuple[float, float]], ranges: list[tuple[int, int]]) -> Renderer:
    """A Renderer with only what chunk culling reads: 90 degree field of view, every chunk reaching 280 m."""
    r = object.__new__(Renderer)
    r.fov = 90.0
    r.chunk_centres = np.array(centres, np.float64)
    r.chunk_ranges = np.array(ranges, np.int64)
    r.chunk_reach = np.full(len(centres), 280.0)
    r.stats = {"chunks_drawn": 0, "draw_calls": 0}
    return r


def test_visible_chunks_merge_into_abutting_ranges():
    # chunk 2 is behind the camera (looking along +x from the origin); 0-1 and 3-4 abut
    r = bare_renderer([(50, 0), (100, 0), (-200, 0), (150, 0), (60, 5)], [(0, 30), (30, 6), (36, 9), (45, 3), (48, 12)])
    np.testing.assert_array_equal(r._visible_ranges(np.eye(4)), [[0, 36], [45, 15]])
    assert r.stats["chunks_drawn"] == 4
    # chunks that are not in index order do not merge even when both are visible
    r = bare_renderer([(50, 0), (100, 0)], [(12, 6), (0, 12)])
    np.testing.assert_array_equal(r._visible_ranges(np.eye(4)), [[12, 6], [0, 12]])


def test_no_visible_chunk_gives_no_range():
    r = bare_renderer([(-100, 0), (0, 900)], [(0, 3), (3, 3)])
    assert r._visible_ranges(np.eye(4)).shape == (0, 2)
    assert r.stats["chunks_drawn"] == 0
