"""Recorded clips on disk: the format, and a reader that checks it.

```
ROOT/<town>/<clip>/meta.json        what was recorded (see ClipMeta)
                   rgb/000000.png   RGB frames
                   semantic/000000.png  uint8 22-class ids
                   depth/000000.png CARLA's 24-bit depth encoding (R + G*256 + B*65536)
                   poses.npy        (N, 4, 4) camera-to-world matrices (carla.Transform.get_matrix())
```
Writers build a clip in a hidden temporary folder next to it and rename it into place when it is
complete, so any folder with a `meta.json` is a whole clip and folders starting with "." are
ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.conventions import CLASS_NAMES, NUM_CLASSES, decode_carla_depth, intrinsics

FORMAT_VERSION = 1
MODALITIES = ("rgb", "semantic", "depth")


class ClipFormatError(ValueError):
    """A folder that is not a valid clip; the message names the clip and the file."""


@dataclass(frozen=True)
class ClipMeta:
    """The contents of a clip's `meta.json`."""

    backend: str
    town: str
    num_frames: int
    height: int
    width: int
    fov: float
    fixed_delta_seconds: float
    split: str | None = None
    seed: int | None = None
    classes: tuple[str, ...] = CLASS_NAMES
    software_version: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def intrinsics(self) -> np.ndarray:
        """The camera's 3x3 K."""
        return intrinsics(self.width, self.height, self.fov)

    def to_json(self) -> str:
        """Serialise for `meta.json`."""
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        return json.dumps(data, indent=2)

    def __post_init__(self) -> None:
        """Check every field's type and range (`problems` names each bad one); numbers become floats."""
        bad = self.problems()
        if bad:
            raise ClipFormatError("; ".join(bad))
        for name in ("fov", "fixed_delta_seconds"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "classes", tuple(self.classes))

    def problems(self) -> list[str]:
        """What is wrong with the fields, one line per bad field (empty when the metadata is valid)."""

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_number(v: Any) -> bool:
            return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

        checks = {
            "backend": (isinstance(self.backend, str) and self.backend != "", "a non-empty string"),
            "town": (isinstance(self.town, str) and self.town != "", "a non-empty string"),
            "num_frames": (is_int(self.num_frames) and self.num_frames >= 1, "a positive integer"),
            "height": (is_int(self.height) and self.height >= 1, "a positive integer"),
            "width": (is_int(self.width) and self.width >= 1, "a positive integer"),
            "fov": (is_number(self.fov) and 0 < self.fov < 180, "a number of degrees between 0 and 180"),
            "fixed_delta_seconds": (
                is_number(self.fixed_delta_seconds) and self.fixed_delta_seconds > 0,
                "a positive number of seconds",
            ),
            "split": (self.split is None or isinstance(self.split, str), "a string or null"),
            "seed": (self.seed is None or is_int(self.seed), "an integer or null"),
            "classes": (
                isinstance(self.classes, (list, tuple)) and all(isinstance(c, str) for c in self.classes),
                "a list of class names",
            ),
            "software_version": (isinstance(self.software_version, str), "a string"),
            "format_version": (is_int(self.format_version) and self.format_version >= 1, "a positive integer"),
            "extra": (isinstance(self.extra, dict), "a JSON object"),
        }
        return [
            f"field {name!r} must be {what}, got {getattr(self, name)!r}"
            for name, (ok, what) in checks.items()
            if not ok
        ]

    @classmethod
    def from_file(cls, path: Path) -> ClipMeta:
        """Read and check a `meta.json`; any problem is a ClipFormatError naming the file (and the field)."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClipFormatError(f"{path}: missing meta.json (not a recorded clip)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ClipFormatError(f"{path}: unreadable meta.json ({err})") from None
        if not isinstance(data, dict):
            raise ClipFormatError(f"{path}: meta.json must hold a JSON object")
        fields = dataclasses.fields(cls)
        missing = sorted(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data
        )
        if missing:
            raise ClipFormatError(f"{path}: meta.json lacks field(s) {', '.join(missing)}")
        try:
            meta = cls(**{f.name: data[f.name] for f in fields if f.name in data})
        except ClipFormatError as err:
            raise ClipFormatError(f"{path}: bad value in meta.json: {err}") from None
        if meta.format_version > FORMAT_VERSION:
            raise ClipFormatError(
                f"{path}: clip format {meta.format_version} is newer than this reader ({FORMAT_VERSION}); upgrade carla-perception-gym"
            )
        if len(meta.classes) != NUM_CLASSES:
            raise ClipFormatError(
                f"{path}: meta.json lists {len(meta.classes)} classes, expected the {NUM_CLASSES} CARLA classes"
            )
        return meta


def check_poses(poses: np.ndarray, num_frames: int, source: str | Path, atol: float = 1e-3) -> np.ndarray:
    """`poses` as float64 (num_frames, 4, 4) camera-to-world matrices, or a ClipFormatError naming `source`,
    the frame and the problem: another shape, a non-numeric type, NaN/inf, or a matrix that is not a rigid
    transform (rotation part orthonormal with determinant +1, last row 0 0 0 1, within `atol`)."""
    if poses.shape != (num_frames, 4, 4):
        raise ClipFormatError(f"{source}: shape {poses.shape}, expected ({num_frames}, 4, 4) from meta.json")
    if not (np.issubdtype(poses.dtype, np.floating) or np.issubdtype(poses.dtype, np.integer)):
        raise ClipFormatError(f"{source}: poses of type {poses.dtype}, expected numbers")
    poses = poses.astype(np.float64)
    finite = np.isfinite(poses).all(axis=(1, 2))
    if not finite.all():
        raise ClipFormatError(f"{source}: pose of frame {int(np.argmin(finite))} holds NaN or inf")
    rot = poses[:, :3, :3]
    gram = np.abs(rot.transpose(0, 2, 1) @ rot - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    row = np.abs(poses[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    bad = (gram > atol) | (np.abs(det - 1.0) > atol) | (row > atol)
    if bad.any():
        i = int(np.argmax(bad))
        raise ClipFormatError(
            f"{source}: pose of frame {i} is not a rigid camera-to-world transform (rotation "
            f"deviates from orthonormal by {gram[i]:.3g}, determinant {det[i]:.3g}, "
            f"last row {poses[i, 3].tolist()})"
        )
    return poses


def frame_filename(index: int) -> str:
    """File name of frame `index` inside a modality folder."""
    return f"{index:06d}.png"


class Clip:
    """One recorded clip: its metadata, camera poses and lazily read frames."""

    def __init__(self, path: str | Path, check_files: bool = True) -> None:
        self.path = Path(path)
        self.meta = ClipMeta.from_file(self.path / "meta.json")
        poses_path = self.path / "poses.npy"
        try:
            poses = np.load(poses_path, allow_pickle=False)
        except FileNotFoundError:
            raise ClipFormatError(f"{poses_path}: missing poses.npy") from None
        except (OSError, ValueError) as err:
            raise ClipFormatError(f"{poses_path}: unreadable ({err})") from None
        self.poses = check_poses(poses, self.meta.num_frames, poses_path)
        if check_files:
            for modality in MODALITIES:
                for i in range(self.meta.num_frames):
                    file = self.path / modality / frame_filename(i)
                    if not file.is_file():
                        raise ClipFormatError(f"{file}: missing frame {i} of {self.meta.num_frames}")

    def __len__(self) -> int:
        return self.meta.num_frames

    def __repr__(self) -> str:
        return f"Clip({str(self.path)!r}, town={self.meta.town!r}, frames={len(self)})"

    def _read(self, modality: str, index: int, flags: int) -> np.ndarray:
        file = self.path / modality / frame_filename(index)
        image = cv2.imread(str(file), flags)
        if image is None:
            raise ClipFormatError(f"{file}: missing or unreadable image")
        expected = (self.meta.height, self.meta.width)
        if image.shape[:2] != expected:
            raise ClipFormatError(
                f"{file}: size {image.shape[1]}x{image.shape[0]} does not match meta.json's {expected[1]}x{expected[0]}"
            )
        return image

    def frame(self, index: int) -> dict[str, np.ndarray]:
        """Frame `index` as a dict: rgb (H,W,3) uint8, semantic (H,W) uint8, depth (H,W) float32 m, pose (4,4)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {self!r}")
        rgb = self._read("rgb", index, cv2.IMREAD_COLOR)[:, :, ::-1]
        semantic = self._read("semantic", index, cv2.IMREAD_UNCHANGED)
        if semantic.ndim != 2 or semantic.dtype != np.uint8:
            raise ClipFormatError(
                f"{self.path / 'semantic' / frame_filename(index)}: expected a single-channel 8-bit label image"
            )
        if semantic.max(initial=0) >= NUM_CLASSES:
            raise ClipFormatError(
                f"{self.path / 'semantic' / frame_filename(index)}: class id {semantic.max()} is not one of the {NUM_CLASSES} classes"
            )
        depth_bgr = self._read("depth", index, cv2.IMREAD_COLOR)
        return {
            "rgb": np.ascontiguousarray(rgb),
            "semantic": semantic,
            "depth": decode_carla_depth(np.ascontiguousarray(depth_bgr[:, :, ::-1])),
            "pose": self.poses[index],
        }


class ClipStore:
    """All complete clips under a root folder, filtered by split or town."""

    def __init__(self, root: str | Path, check_files: bool = True) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ClipFormatError(f"{self.root}: no such clip folder")
        self._clips = [
            Clip(meta.parent, check_files=check_files)
            for meta in sorted(self.root.glob("*/*/meta.json"))
            if not any(part.startswith(".") for part in meta.relative_to(self.root).parts)
        ]

    def clips(self, split: str | None = None, towns: list[str] | tuple[str, ...] | None = None) -> list[Clip]:
        """The clips of one split and/or of the given towns (all clips when both are None)."""
        return [
            c
            for c in self._clips
            if (split is None or c.meta.split == split) and (towns is None or c.meta.town in towns)
        ]

    @property
    def towns(self) -> list[str]:
        """Names of the towns with at least one clip."""
        return sorted({c.meta.town for c in self._clips})

    def __len__(self) -> int:
        return len(self._clips)
