"""Recorded clips on disk (SPEC 5): the format, and a reader that checks it.

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

    @classmethod
    def from_file(cls, path: Path) -> "ClipMeta":
        """Read and check a `meta.json`; any problem is a ClipFormatError naming the file."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClipFormatError(f"{path}: missing meta.json (not a recorded clip)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ClipFormatError(f"{path}: unreadable meta.json ({err})") from None
        if not isinstance(data, dict):
            raise ClipFormatError(f"{path}: meta.json must hold a JSON object")
        fields = dataclasses.fields(cls)
        missing = sorted(f.name for f in fields
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data)
        if missing:
            raise ClipFormatError(f"{path}: meta.json lacks field(s) {', '.join(missing)}")
        values = {f.name: data[f.name] for f in fields if f.name in data}
        try:
            for name in ("num_frames", "height", "width"):
                values[name] = int(values[name])
            values["fov"] = float(values["fov"])
            values["classes"] = tuple(values.get("classes", CLASS_NAMES))
            meta = cls(**values)
        except (TypeError, ValueError) as err:
            raise ClipFormatError(f"{path}: bad value in meta.json ({err})") from None
        if meta.format_version > FORMAT_VERSION:
            raise ClipFormatError(f"{path}: clip format {meta.format_version} is newer than this reader ({FORMAT_VERSION}); upgrade carla-perception-gym")
        if len(meta.classes) != NUM_CLASSES:
            raise ClipFormatError(f"{path}: meta.json lists {len(meta.classes)} classes, expected the {NUM_CLASSES} CARLA classes")
        if meta.num_frames < 1 or meta.height < 1 or meta.width < 1:
            raise ClipFormatError(f"{path}: num_frames, height and width must be positive")
        return meta


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
        if poses.shape != (self.meta.num_frames, 4, 4):
            raise ClipFormatError(f"{poses_path}: shape {poses.shape}, expected ({self.meta.num_frames}, 4, 4) from meta.json")
        self.poses = poses.astype(np.float64)
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
            raise ClipFormatError(f"{file}: size {image.shape[1]}x{image.shape[0]} does not match meta.json's {expected[1]}x{expected[0]}")
        return image

    def frame(self, index: int) -> dict[str, np.ndarray]:
        """Frame `index` as a dict: rgb (H,W,3) uint8, semantic (H,W) uint8, depth (H,W) float32 m, pose (4,4)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {self!r}")
        rgb = self._read("rgb", index, cv2.IMREAD_COLOR)[:, :, ::-1]
        semantic = self._read("semantic", index, cv2.IMREAD_UNCHANGED)
        if semantic.ndim != 2 or semantic.dtype != np.uint8:
            raise ClipFormatError(f"{self.path / 'semantic' / frame_filename(index)}: expected a single-channel 8-bit label image")
        if semantic.max(initial=0) >= NUM_CLASSES:
            raise ClipFormatError(f"{self.path / 'semantic' / frame_filename(index)}: class id {semantic.max()} is not one of the {NUM_CLASSES} classes")
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
            c for c in self._clips
            if (split is None or c.meta.split == split) and (towns is None or c.meta.town in towns)
        ]

    @property
    def towns(self) -> list[str]:
        """Names of the towns with at least one clip."""
        return sorted({c.meta.town for c in self._clips})

    def __len__(self) -> int:
        return len(self._clips)
