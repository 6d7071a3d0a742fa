"""Meshes as flat arrays of triangles, built in batches with NumPy.

A vertex is 16 bytes: position (3 float32) and RGBA (4 uint8) where A carries the 22-class id, so
one vertex buffer holds colour and label and the renderer needs no per-object state. Normals are
not stored: the fragment shader derives flat normals from screen-space derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VERTEX = np.dtype([("pos", np.float32, 3), ("rgba", np.uint8, 4)])

Mesh = tuple[np.ndarray, np.ndarray]  # (V, 3) vertex positions, (T, 3) triangle indices


def _unit_box() -> Mesh:
    """A unit box [-0.5, 0.5]^2 x [0, 1] without its bottom face: 8 vertices, 10 triangles."""
    c = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    verts = np.concatenate([np.c_[c, np.zeros(4)], np.c_[c, np.ones(4)]])
    tris = []
    for i in range(4):
        j = (i + 1) % 4
        tris += [[i, j, 4 + j], [i, 4 + j, 4 + i]]
    tris += [[4, 5, 6], [4, 6, 7]]
    return verts, np.array(tris)


def _prism(sides: int, top_scale: float) -> Mesh:
    """A unit prism (top_scale 1), frustum (0 < top_scale < 1) or cone (0) of diameter 1, height 1."""
    ang = np.arange(sides) * 2 * np.pi / sides
    ring = np.stack([np.cos(ang), np.sin(ang)], axis=-1) * 0.5
    verts = np.concatenate([np.c_[ring, np.zeros(sides)], np.c_[ring * top_scale, np.ones(sides)], [[0, 0, 1]]])
    apex = 2 * sides
    tris = []
    for i in range(sides):
        j = (i + 1) % sides
        if top_scale > 0:
            tris += [[i, j, sides + j], [i, sides + j, sides + i], [apex, sides + i, sides + j]]
        else:
            tris += [[i, j, apex]]
    return verts, np.array(tris)


def _stack(a: Mesh, b: Mesh) -> Mesh:
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1] + len(a[0])])


def _scaled(m: Mesh, scale, shift=(0, 0, 0)) -> Mesh:
    return m[0] * np.asarray(scale) + np.asarray(shift), m[1]


UNIT_BOX = _unit_box()
# Few sides on purpose: trees and poles are most of the triangles, and vertex work is the
# renderer's main cost on a CPU rasteriser.
UNIT_PRISM = _prism(5, 1.0)  # poles, bins
UNIT_TRUNK = _prism(4, 1.0)
UNIT_CONE = _prism(6, 0.0)  # conifer crowns
UNIT_CROWN = _stack(_scaled(_prism(5, 0.55), (1, 1, 0.5)), _scaled(_prism(5, 0.0), (0.55, 0.55, 0.5), (0, 0, 0.5)))
# A kerb stone: top and the two long sides of a unit box (its ends always touch the next stone).
UNIT_KERB = (UNIT_BOX[0], UNIT_BOX[1][[0, 1, 4, 5, 8, 9]])
UNITS = {
    "kerb": UNIT_KERB,
    "box": UNIT_BOX,
    "prism": UNIT_PRISM,
    "trunk": UNIT_TRUNK,
    "cone": UNIT_CONE,
    "crown": UNIT_CROWN,
}


def transform_mesh(unit: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Place copies of unit vertices: (N, 3) base centres, (N, 3) sizes, (N,) yaws -> (N * V, 3) points."""
    centre, size, yaw = np.atleast_2d(centre), np.atleast_2d(size), np.atleast_1d(yaw)
    local = unit[None] * size[:, None, :]  # (N, V, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    out = np.stack([x, y, local[..., 2]], axis=-1) + centre[:, None, :]
    return out.reshape(-1, 3)


@dataclass
class MeshBuilder:
    """Collects primitives (boxes, prisms, cones, crowns) with colours and classes, then emits an indexed mesh."""

    parts: dict[str, list[tuple]] = field(default_factory=dict)

    def add(self, kind: str, centre, size, yaw: float, rgb, cls: int) -> None:
        """Queue one primitive: base centre (x, y, z), size (length, width, height), yaw, RGB 0..255, class id."""
        self.parts.setdefault(kind, []).append((*centre, *size, yaw, *rgb, cls))

    def box(self, centre, size, yaw: float, rgb, cls: int) -> None:
        self.add("box", centre, size, yaw, rgb, cls)

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        """All queued primitives as (VERTEX array, (T, 3) uint32 triangle indices)."""
        verts, tris, base = [], [], 0
        for kind, rows in self.parts.items():
            unit_v, unit_t = UNITS[kind]
            a = np.array(rows, dtype=np.float64)
            pos = transform_mesh(unit_v, a[:, 0:3], a[:, 3:6], a[:, 6])
            rgba = np.repeat(np.concatenate([a[:, 7:10], a[:, 10:11]], axis=1), len(unit_v), axis=0)
            v = np.empty(len(pos), VERTEX)
            v["pos"] = pos
            v["rgba"] = np.clip(rgba, 0, 255).astype(np.uint8)
            verts.append(v)
            tris.append((unit_t[None] + (base + np.arange(len(a)) * len(unit_v))[:, None, None]).reshape(-1, 3))
            base += len(pos)
        if not verts:
            return np.empty(0, VERTEX), np.empty((0, 3), np.uint32)
        return np.concatenate(verts), np.concatenate(tris).astype(np.uint32)


def chunk_sort(
    vertices: np.ndarray, tris: np.ndarray, chunk: float, origin: np.ndarray, detail_classes: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort triangles by square chunk of side `chunk` metres, small-detail classes in chunks of their own.

    Returns the sorted (T, 3) indices, the (C, 2) chunk centres, (C, 2) (first index, index count)
    and (C,) whether a chunk holds detail, so the renderer can draw only the chunks in view and
    stop drawing detail (trees, poles, props) sooner than buildings.
    """
    centroid = vertices["pos"][tris].mean(axis=1)[:, :2]
    cell = np.floor((centroid - origin) / chunk).astype(np.int64)
    detail = np.isin(vertices["rgba"][tris[:, 0], 3], detail_classes).astype(np.int64)
    key = (detail * 100000 + cell[:, 0]) * 100000 + cell[:, 1]
    order = np.argsort(key, kind="stable")
    tris, key = tris[order], key[order]
    uniq, first, count = np.unique(key, return_index=True, return_counts=True)
    cx, cy = (uniq // 100000) % 100000, uniq % 100000
    centres = np.stack([cx, cy], axis=-1) * chunk + origin + chunk / 2
    return tris, centres, np.stack([first * 3, count * 3], axis=-1), uniq // 100000 // 100000 > 0


def vehicle_mesh(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length vehicle meshes (body, cabin, wheels) in the vehicle frame, x forward.

    Returns vertices whose alpha is 255 on parts taking the instance colour and 0 elsewhere
    (the class comes from the instance). Sizes are scaled per instance.
    """
    b = MeshBuilder()
    dark, glass = (25, 25, 28), (40, 55, 70)
    if kind == "car":
        b.box((0, 0, 0.3), (1.0, 1.0, 0.38), 0, (0, 0, 0), 255)
        b.box((-0.05, 0, 0.68), (0.55, 0.86, 0.32), 0, glass, 0)
    elif kind == "van":
        b.box((0, 0, 0.28), (1.0, 1.0, 0.72), 0, (0, 0, 0), 255)
        b.box((0.46, 0, 0.55), (0.1, 0.9, 0.25), 0, glass, 0)
    else:  # truck: cab and box
        b.box((0.38, 0, 0.25), (0.24, 1.0, 0.55), 0, (0, 0, 0), 255)
        b.box((-0.12, 0, 0.25), (0.74, 1.0, 0.75), 0, (200, 200, 195), 0)
    for fx in (-0.32, 0.32):
        for fy in (-0.45, 0.45):
            b.box((fx, fy, 0.0), (0.16, 0.12, 0.3), 0, dark, 0)
    return b.build()


def pedestrian_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A pedestrian (legs, torso, head) about 1 unit tall; alpha 255 marks the clothing colour."""
    b = MeshBuilder()
    b.box((0, -0.1, 0.0), (0.22, 0.16, 0.48), 0, (40, 40, 60), 0)
    b.box((0, 0.1, 0.0), (0.22, 0.16, 0.48), 0, (40, 40, 60), 0)
    b.box((0, 0, 0.46), (0.26, 0.48, 0.36), 0, (0, 0, 0), 255)
    b.add("prism", (0, 0, 0.83), (0.2, 0.2, 0.17), 0, (224, 180, 150), 0)
    return b.build()


def lamp_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A traffic-light lamp: a thin box facing +x, coloured per instance."""
    b = MeshBuilder()
    b.box((0, 0, 0), (0.06, 1.0, 1.0), 0, (0, 0, 0), 255)
    return b.build()
