"""The camera: one OpenGL render pass (moderngl, headless EGL) with three render targets.

Target 0 is RGB, target 1 the 22-class id and target 2 planar depth (distance along the optical
axis, float32, 1000 m for sky), all from the same rasterisation, so labels and depth match the
image pixel for pixel. Draw calls per frame: ground (one quad textured with the ground map), the
static scenery chunks in view (merged ranges of one big vertex buffer), one instanced call per
actor mesh, and last the sky, shaded only where nothing else was drawn. Images are rendered upside
down (a flipped projection) so GL's bottom-up rows come out top-down without a copy, and are read
straight into NumPy arrays.

The GL context is made lazily, by the process that renders, on the first frame: a simulator
constructed in one process and used in a forked child (Gymnasium's `AsyncVectorEnv` builds an env
in the parent before forking its workers) renders in the child with its own context. A context
made in another process is never used nor released; it is dropped and a new one made, unless the
parent had already rendered before the fork: the driver's state does not survive a fork, so that
raises RenderError at once (start such workers with forkserver or spawn).
"""

from __future__ import annotations

import importlib.util
import math
import os
import time

import numpy as np

from perception.conventions import CLASS_IDS, FAR_PLANE_M

from .geometry import chunk_sort, lamp_mesh, pedestrian_mesh, vehicle_mesh
from .weather import Weather
from .world import World

CHUNK = 48.0  # metres per static chunk
DRAW_DISTANCE = 280.0  # static chunks farther than this are not drawn
DETAIL_DISTANCE = 150.0  # trees, poles, signs and props farther than this are not drawn
DETAIL_CLASSES = tuple(
    CLASS_IDS[c]
    for c in ("Vegetation", "Pole", "TrafficSign", "TrafficLight", "Static", "Dynamic", "Other", "Sidewalk")
)
NEAR, FAR = 0.1, 2000.0
INSTANCE_FLOATS = 11  # x, y, z, yaw, sx, sy, sz, r, g, b, class
MAX_INSTANCES = 512
ACTOR_MESHES = ("car", "van", "truck", "pedestrian", "lamp")
# What `Renderer.render` times when asked (`Renderer.timings`), in order:
PHASES = {
    "submit": "camera uniforms, chunk culling, instance uploads and draw calls (Mesa's llvmpipe shades vertices here)",
    "raster": "waiting for the rasteriser: fragment shading into the three targets",
    "allocate": "the output arrays (there is no conversion: rows come out top-down in CARLA's formats)",
    "readback": "reading RGB, labels and depth straight into the output arrays",
}

GL_LIBS_HINT = (
    "The embedded simulator renders with OpenGL through moderngl and needs a working (headless) EGL/GL "
    "driver. Install the system libraries: on Debian/Ubuntu `apt-get install libegl1 libgl1 libgl1-mesa-dri` "
    "(Mesa's llvmpipe renders on the CPU); on Fedora `dnf install mesa-libEGL mesa-dri-drivers`; "
    "with conda `conda install -c conda-forge mesalib`."
)


FORK_HINT = (
    "Create simulators in the worker processes without rendering in the parent first, or start the workers "
    "with the 'forkserver' or 'spawn' method (gym.vector.AsyncVectorEnv(..., context='forkserver'), "
    "carla_gym.make_vec(..., start_method='forkserver'))."
)

_gl_pid: int | None = None  # the process that loaded the GL driver (made its first context)


class RenderError(RuntimeError):
    """No usable OpenGL context; the message says which system libraries to install, or how to start workers."""


def _load_triton_first() -> None:
    """Import Triton (if installed) before any EGL context exists.

    Mesa's llvmpipe and Triton each load their own LLVM. Importing Triton after llvmpipe is
    loaded crashes the process (a segfault inside Triton's import, seen with Mesa 22 / LLVM 15
    and torch 2.14's Triton); importing it first is fine. torchvision imports Triton through
    torch._dynamo, so without this, `import torchvision` after creating a simulator would crash.
    """
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def create_context():  # -> moderngl.Context
    """A standalone OpenGL 3.3+ context: EGL (headless) first, then the platform default.

    Raises RenderError at once in a process forked from one that had already made a context: the
    GL driver's state (Mesa's llvmpipe keeps worker threads per display) does not survive a fork,
    and a context made in the child would hang on its first framebuffer read.
    """
    global _gl_pid
    if _gl_pid is not None and _gl_pid != os.getpid():
        raise RenderError(
            f"OpenGL was already used in process {_gl_pid} before this process (pid {os.getpid()}) "
            f"was forked from it; the GL driver cannot be used again after a fork. {FORK_HINT}"
        )
    _load_triton_first()
    try:
        import moderngl
    except ImportError as err:  # pragma: no cover - moderngl is a dependency
        raise RenderError(f"moderngl is not installed (pip install moderngl). {GL_LIBS_HINT}") from err
    errors = []
    for kwargs in ({"backend": "egl"}, {}):
        try:
            ctx = moderngl.create_standalone_context(require=330, **kwargs)
            _gl_pid = os.getpid()
            return ctx
        except Exception as err:  # noqa: BLE001 - any failure means "try the next way"
            errors.append(f"{kwargs.get('backend', 'default')}: {err}")
    raise RenderError(f"could not create an OpenGL 3.3 context ({'; '.join(errors)}). {GL_LIBS_HINT}")


_COMMON = """
#version 330
uniform vec3 cam_pos; uniform vec3 cam_fwd;
uniform vec3 sun_dir; uniform vec3 sun_col; uniform vec3 ambient;
uniform vec3 fog_col; uniform float fog_density;
layout(location = 0) out vec4 o_rgb;
layout(location = 1) out float o_cls;
layout(location = 2) out float o_depth;
float hash(vec2 p) { return fract(sin(dot(p, vec2(127.1, 311.7))) * 43758.5453); }
void emit(vec3 albedo, vec3 n, vec3 wp, float cls, float emissive) {
    vec3 v = wp - cam_pos;
    if (dot(n, v) > 0.0) n = -n;
    vec3 c = mix(albedo * (ambient + sun_col * max(dot(n, sun_dir), 0.0)), albedo, emissive);
    c = mix(fog_col, c, exp(-fog_density * length(v)));
    o_rgb = vec4(c, 1.0);
    o_cls = cls / 255.0;
    o_depth = dot(v, cam_fwd);
}
"""

_MESH_VS = """
#version 330
uniform mat4 vp;
in vec3 in_pos; in vec4 in_rgba;
out vec3 wp; out vec3 col; flat out float cls;
void main() {
    wp = in_pos; col = in_rgba.rgb; cls = floor(in_rgba.a * 255.0 + 0.5);
    gl_Position = vp * vec4(in_pos, 1.0);
}
"""

_MESH_FS = (
    _COMMON
    + """
in vec3 wp; in vec3 col; flat in float cls;
void main() {
    vec3 n = normalize(cross(dFdx(wp), dFdy(wp)));
    vec3 a = col;
    if (cls == 1.0 && abs(n.z) < 0.5) {  // building facades get rows of windows
        float along = abs(n.x) > abs(n.y) ? wp.y : wp.x;
        float fz = fract(wp.z / 3.2), fa = fract(along / 2.7);
        if (fz > 0.35 && fz < 0.8 && fa > 0.4 && wp.z > 1.0) a = a * 0.3 + vec3(0.06, 0.08, 0.11);
    }
    a *= 0.9 + 0.1 * hash(floor(wp.xy * 2.0) + floor(wp.z * 2.0));
    emit(a, n, wp, cls, 0.0);
}
"""
)

_GROUND_VS = """
#version 330
uniform mat4 vp;
in vec3 in_pos;
out vec3 wp;
void main() { wp = in_pos; gl_Position = vp * vec4(in_pos, 1.0); }
"""

_GROUND_FS = (
    _COMMON
    + """
uniform sampler2D ground; uniform vec2 g_origin; uniform float g_res; uniform ivec2 g_size;
uniform vec3 grass;
in vec3 wp;
void main() {
    ivec2 c = clamp(ivec2(floor((wp.xy - g_origin) / g_res)), ivec2(0), g_size - 1);
    vec2 t = floor(texelFetch(ground, c, 0).rg * 255.0 + 0.5);
    float cls = t.r, var = t.g;
    float h = hash(floor(wp.xy * 3.0)), h2 = hash(floor(wp.xy * 0.2));
    vec3 a;
    if (cls == 7.0) a = vec3(0.24, 0.24, 0.26) * (0.92 + 0.05 * var) * (0.88 + 0.14 * h);
    else if (cls == 6.0) a = (var > 0.5 ? vec3(0.85, 0.68, 0.12) : vec3(0.88)) * (0.9 + 0.1 * h);
    else if (cls == 8.0) {
        vec2 f = fract(wp.xy * 0.5);
        a = vec3(0.6, 0.58, 0.55) * ((f.x < 0.04 || f.y < 0.04) ? 0.78 : 0.94 + 0.06 * h);
    }
    else if (cls == 21.0) a = vec3(0.1, 0.2, 0.28) * (0.9 + 0.2 * h);
    else if (cls == 16.0) a = vec3(0.36, 0.33, 0.3) * (0.75 + 0.35 * h);
    else a = mix(grass, grass * vec3(1.3, 1.1, 0.75), h2) * (0.82 + 0.22 * h);
    emit(a, vec3(0.0, 0.0, 1.0), wp, cls, 0.0);
}
"""
)

_ACTOR_VS = """
#version 330
uniform mat4 vp;
in vec3 in_pos; in vec4 in_rgba;
in vec4 i_pose; in vec3 i_scale; in vec4 i_col;
out vec3 wp; out vec3 col; flat out float cls;
void main() {
    vec3 p = in_pos * i_scale;
    float c = cos(i_pose.w), s = sin(i_pose.w);
    wp = vec3(p.x * c - p.y * s, p.x * s + p.y * c, p.z) + i_pose.xyz;
    col = in_rgba.a > 0.5 ? i_col.rgb : in_rgba.rgb;
    cls = i_col.a;
    gl_Position = vp * vec4(wp, 1.0);
}
"""

_ACTOR_FS = (
    _COMMON
    + """
in vec3 wp; in vec3 col; flat in float cls;
void main() {
    vec3 n = normalize(cross(dFdx(wp), dFdy(wp)));
    emit(col, n, wp, cls, cls == 18.0 ? 1.0 : 0.0);
}
"""
)

_SKY_VS = """
#version 330
uniform vec3 cam_fwd; uniform vec3 cam_right; uniform vec3 cam_up; uniform vec2 tan_half;
out vec3 ray;
void main() {
    vec2 ndc = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
    // the projection is flipped vertically: ndc.y = -1 is the top image row
    ray = cam_fwd + ndc.x * tan_half.x * cam_right - ndc.y * tan_half.y * cam_up;
    gl_Position = vec4(ndc, 1.0, 1.0);
}
"""

_SKY_FS = (
    _COMMON
    + """
uniform vec3 zenith; uniform vec3 horizon;
in vec3 ray;
void main() {
    vec3 d = normalize(ray);
    vec3 c = mix(horizon, zenith, sqrt(clamp(d.z, 0.0, 1.0)));
    float sd = max(dot(d, sun_dir), 0.0);
    c += sun_col * (pow(sd, 600.0) * 3.0 + pow(sd, 10.0) * 0.2);
    c = mix(fog_col, c, exp(-fog_density * 150.0));
    o_rgb = vec4(c, 1.0);
    o_cls = 13.0 / 255.0;
    o_depth = %(far)r;
}
"""
    % {"far": float(FAR_PLANE_M)}
)


def view_projection(camera_to_world: np.ndarray, width: int, height: int, fov: float) -> np.ndarray:
    """World -> clip matrix for a CARLA camera, flipped vertically so row 0 is the image top."""
    tan_x = math.tan(math.radians(fov) / 2)
    tan_y = tan_x * height / width
    to_gl = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    proj = np.array(
        [
            [1 / tan_x, 0, 0, 0],
            [0, -1 / tan_y, 0, 0],  # the vertical flip
            [0, 0, -(FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR)],
            [0, 0, -1, 0],
        ]
    )
    r, t = camera_to_world[:3, :3], camera_to_world[:3, 3]
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = r.T
    world_to_cam[:3, 3] = -r.T @ t
    return proj @ to_gl @ world_to_cam


class Renderer:
    """Renders a World from a camera pose into preallocated RGB, label and depth arrays.

    The constructor only prepares CPU-side data; the GL context and everything in it are made on
    the first `render` in the process that calls it (see the module docstring).
    """

    def __init__(self, world: World, size: tuple[int, int], fov: float) -> None:
        self.height, self.width = size
        self.fov = float(fov)
        self.world = world
        self._static_tris, self.chunk_centres, self.chunk_ranges, detail = chunk_sort(
            world.vertices, world.triangles, CHUNK, world.ground.origin, DETAIL_CLASSES
        )
        self.chunk_reach = np.where(detail, DETAIL_DISTANCE, DRAW_DISTANCE)
        self.ctx = None  # moderngl.Context, made by `_context()`
        self._pid: int | None = None  # the process that made self.ctx
        self._weather: Weather | None = None
        self.stats = {"chunks_drawn": 0, "draw_calls": 0}
        self.timings: dict[str, float] | None = None  # a dict: `render` stores its phase times there

    def _context(self):  # -> moderngl.Context
        """This process's GL context, made (with all GL resources) on first use and again after a fork."""
        if self.ctx is not None and self._pid == os.getpid():
            return self.ctx
        self.ctx = None  # made in another process: dropped, never used nor released from here
        self._build()
        return self.ctx

    def _build(self) -> None:
        """Make the context, framebuffer, programs, buffers and textures, and upload the weather."""
        import moderngl

        ctx = create_context()
        world, h, w = self.world, self.height, self.width
        self._targets = [
            ctx.renderbuffer((w, h), 4),
            ctx.renderbuffer((w, h), 1),
            ctx.renderbuffer((w, h), 1, dtype="f4"),
        ]
        self.fbo = ctx.framebuffer(self._targets, ctx.depth_renderbuffer((w, h)))

        self.p_mesh = ctx.program(vertex_shader=_MESH_VS, fragment_shader=_MESH_FS)
        self.p_ground = ctx.program(vertex_shader=_GROUND_VS, fragment_shader=_GROUND_FS)
        self.p_actor = ctx.program(vertex_shader=_ACTOR_VS, fragment_shader=_ACTOR_FS)
        self.p_sky = ctx.program(vertex_shader=_SKY_VS, fragment_shader=_SKY_FS)
        self.sky_vao = ctx.vertex_array(self.p_sky, [])

        g = world.ground
        tex_data = np.ascontiguousarray(np.stack([g.cls, g.variant], axis=-1))
        self.ground_tex = ctx.texture((g.cls.shape[1], g.cls.shape[0]), 2, tex_data.tobytes())
        self.ground_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.ground_tex.repeat_x = self.ground_tex.repeat_y = False
        x0, y0, x1, y1 = g.extent
        pad = 1500.0
        quad = np.array(
            [
                [x0 - pad, y0 - pad, 0],
                [x1 + pad, y0 - pad, 0],
                [x1 + pad, y1 + pad, 0],
                [x0 - pad, y0 - pad, 0],
                [x1 + pad, y1 + pad, 0],
                [x0 - pad, y1 + pad, 0],
            ],
            np.float32,
        )
        self.ground_vao = ctx.vertex_array(self.p_ground, [(ctx.buffer(quad.tobytes()), "3f", "in_pos")])
        self.p_ground["g_origin"].value = tuple(g.origin)
        self.p_ground["g_res"].value = 0.1
        self.p_ground["g_size"].value = (g.cls.shape[1], g.cls.shape[0])

        self.static_vao = ctx.vertex_array(
            self.p_mesh,
            [(ctx.buffer(world.vertices.tobytes()), "3f 4f1", "in_pos", "in_rgba")],
            index_buffer=ctx.buffer(self._static_tris.astype(np.uint32).tobytes()),
            index_element_size=4,
        )

        self._indirect_capacity = 64
        self._indirect = ctx.buffer(reserve=self._indirect_capacity * 20, dynamic=True)
        self.instance_buffers = {}
        self.actor_vaos = {}
        for name in ACTOR_MESHES:
            mesh, mesh_tris = (
                pedestrian_mesh() if name == "pedestrian" else lamp_mesh() if name == "lamp" else vehicle_mesh(name)
            )
            ibuf = ctx.buffer(reserve=MAX_INSTANCES * INSTANCE_FLOATS * 4, dynamic=True)
            self.instance_buffers[name] = ibuf
            self.actor_vaos[name] = ctx.vertex_array(
                self.p_actor,
                [
                    (ctx.buffer(mesh.tobytes()), "3f 4f1", "in_pos", "in_rgba"),
                    (ibuf, "4f 3f 4f/i", "i_pose", "i_scale", "i_col"),
                ],
                index_buffer=ctx.buffer(mesh_tris.astype(np.uint32).tobytes()),
                index_element_size=4,
            )
        self.ctx, self._pid = ctx, os.getpid()
        if self._weather is not None:
            self._upload_weather(self._weather)

    def set_weather(self, weather: Weather) -> None:
        """Use the lighting and fog of `weather` (uploaded now if the context exists, else when it is made)."""
        self._weather = weather
        if self.ctx is not None and self._pid == os.getpid():
            self._upload_weather(weather)

    def _upload_weather(self, weather: Weather) -> None:
        values = {
            "sun_dir": tuple(weather.sun_direction),
            "sun_col": weather.sun_colour,
            "ambient": weather.ambient,
            "fog_col": weather.fog_colour,
            "fog_density": weather.fog_density,
        }
        for prog in (self.p_mesh, self.p_ground, self.p_actor, self.p_sky):
            for k, v in values.items():
                if k in prog:
                    prog[k].value = v
        self.p_sky["zenith"].value = weather.zenith
        self.p_sky["horizon"].value = weather.horizon
        self.p_ground["grass"].value = weather.grass

    def _visible_ranges(self, cam: np.ndarray) -> np.ndarray:
        """(R, 2) (first index, index count) of the static chunks in view, abutting chunks merged into one range."""
        pos, fwd = cam[:2, 3], cam[:2, 0]
        fwd = fwd / max(np.linalg.norm(fwd), 1e-9)
        v = self.chunk_centres - pos
        along = v @ fwd
        across = np.abs(v[:, 0] * fwd[1] - v[:, 1] * fwd[0])
        r = CHUNK * 0.75
        tan_x = math.tan(math.radians(self.fov) / 2)
        dist = np.hypot(v[:, 0], v[:, 1])
        visible = (dist < self.chunk_reach + r) & (along > -r) & (across <= along * tan_x + r * math.sqrt(1 + tan_x**2))
        self.stats["chunks_drawn"] = int(visible.sum())
        chunks = self.chunk_ranges[visible]
        if len(chunks) == 0:
            return chunks
        starts = np.flatnonzero(np.r_[True, chunks[1:, 0] != chunks[:-1, 0] + chunks[:-1, 1]])
        ends = np.r_[starts[1:], len(chunks)] - 1
        first = chunks[starts, 0]
        return np.stack([first, chunks[ends, 0] + chunks[ends, 1] - first], axis=-1)

    def render(
        self, camera_to_world: np.ndarray, actors: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render one frame; `actors` maps a mesh name to (N, 11) float32 instances. Returns (rgb, labels, depth).

        With `self.timings` set to a dict, each call stores the seconds of its phases there (see
        `PHASES`); that adds one wait for the rasteriser between drawing and reading back.
        """
        ctx = self._context()
        timings = self.timings
        t0 = time.perf_counter() if timings is not None else 0.0
        self._draw(ctx, np.asarray(camera_to_world, dtype=np.float64), actors)
        if timings is not None:
            t1 = time.perf_counter()
            ctx.finish()
            t2 = time.perf_counter()
        h, w = self.height, self.width
        rgb = np.empty((h, w, 3), np.uint8)
        labels = np.empty((h, w), np.uint8)
        depth = np.empty((h, w), np.float32)
        if timings is not None:
            t3 = time.perf_counter()
        # the first read waits for the rasteriser; each reads straight into its array (rows are top-down already)
        self.fbo.read_into(rgb, components=3, attachment=0, alignment=1)
        self.fbo.read_into(labels, components=1, attachment=1, alignment=1)
        self.fbo.read_into(depth, components=1, attachment=2, alignment=1, dtype="f4")
        if timings is not None:
            t4 = time.perf_counter()
            timings.update(submit=t1 - t0, raster=t2 - t1, allocate=t3 - t2, readback=t4 - t3)
        return rgb, labels, depth

    def _draw(self, ctx, cam: np.ndarray, actors: dict[str, np.ndarray]) -> None:  # ctx: moderngl.Context
        """Set the camera, queue every draw call for the frame and count them in `stats`.

        The sky is drawn last, where the depth buffer still holds its cleared far value: the
        rasteriser's early depth test then skips shading the sky behind the ground and scenery.
        The result is the same as painting the sky first, since no geometry can pass a strict
        less-than test at the far value either.
        """
        import moderngl

        h, w = self.height, self.width
        vp = view_projection(cam, w, h, self.fov).astype(np.float32)
        vp_bytes = vp.T.tobytes()  # GLSL matrices are column-major
        cam_pos, cam_fwd = tuple(cam[:3, 3]), tuple(cam[:3, 0])
        for prog in (self.p_mesh, self.p_ground, self.p_actor):
            prog["vp"].write(vp_bytes)
            prog["cam_pos"].value = cam_pos
            prog["cam_fwd"].value = cam_fwd
        tan_x = math.tan(math.radians(self.fov) / 2)
        self.p_sky["cam_fwd"].value = cam_fwd
        self.p_sky["cam_right"].value = tuple(cam[:3, 1])
        self.p_sky["cam_up"].value = tuple(cam[:3, 2])
        self.p_sky["tan_half"].value = (tan_x, tan_x * h / w)

        self.fbo.use()
        ctx.viewport = (0, 0, w, h)
        self.fbo.clear(depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)  # meshes are closed, wound CCW outwards
        ctx.depth_func = "<"
        self.ground_tex.use(0)
        self.ground_vao.render(moderngl.TRIANGLES)
        calls = 1
        ranges = np.asarray(self._visible_ranges(cam), dtype=np.uint32).reshape(-1, 2)
        if len(ranges):  # all visible chunks in one multi-draw call
            cmds = np.zeros((len(ranges), 5), np.uint32)  # count, instances, first index, base vertex, base instance
            cmds[:, 0], cmds[:, 1], cmds[:, 2] = ranges[:, 1], 1, ranges[:, 0]
            if len(ranges) > self._indirect_capacity:
                self._indirect.release()
                self._indirect_capacity = 2 * len(ranges)
                self._indirect = ctx.buffer(reserve=self._indirect_capacity * 20, dynamic=True)
            self._indirect.write(cmds.tobytes())
            self.static_vao.render_indirect(self._indirect, moderngl.TRIANGLES, count=len(ranges))
            calls += 1
        for name, inst in actors.items():
            n = min(len(inst), MAX_INSTANCES)
            if n == 0:
                continue
            self.instance_buffers[name].write(np.ascontiguousarray(inst[:n], dtype=np.float32).tobytes())
            self.actor_vaos[name].render(moderngl.TRIANGLES, instances=n)
            calls += 1
        ctx.disable(moderngl.CULL_FACE)
        ctx.depth_func = "<="  # the sky lies on the far plane: drawn only where nothing else was
        self.sky_vao.render(moderngl.TRIANGLES, vertices=3)
        calls += 1
        self.stats["draw_calls"] = calls

    def release(self) -> None:
        """Free the GL context and everything in it (a context of another process is only dropped)."""
        if self.ctx is not None and self._pid == os.getpid():
            self.ctx.release()
        self.ctx = None
