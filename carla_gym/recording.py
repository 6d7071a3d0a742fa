"""Writing simulator Frames into recorded clips, atomically.

A clip is built in a hidden folder `ROOT/<town>/.<clip>.partial/` and renamed to
`ROOT/<town>/<clip>/` only once every frame, `poses.npy` and `meta.json` are written. An
interrupted recording therefore never leaves a clip that readers would take as complete, and a
re-run skips the clips that are (`clip_is_complete`, or `clip_matches`, which also checks that they were
recorded with the same settings) and redoes the rest.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.conventions import encode_carla_depth
from perception.data.clips import ClipFormatError, ClipMeta, frame_filename

from . import __version__
from .sim.contract import Frame

_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def clip_path(root: str | Path, town: str, clip: str) -> Path:
    """Where a complete clip lives."""
    return Path(root).expanduser() / town / clip


def clip_is_complete(root: str | Path, town: str, clip: str) -> bool:
    """Whether the clip was fully written (its folder exists with a meta.json)."""
    return (clip_path(root, town, clip) / "meta.json").is_file()


class ClipMismatchError(ValueError):
    """A clip folder that is in the way of a recording: another recording's clip, or not a readable clip."""


_MISSING = object()


def _recorded(meta: ClipMeta, key: str) -> Any:
    """A `meta.json` value by key; `extra.NAME` reads `meta.extra` (missing: `_MISSING`)."""
    if key.startswith("extra."):
        return meta.extra.get(key[len("extra.") :], _MISSING)
    return getattr(meta, key)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def clip_matches(root: str | Path, town: str, clip: str, expected: dict[str, Any]) -> bool:
    """Whether the clip is already recorded with the `expected` meta.json values (True) or absent (False).

    `expected` maps meta.json keys (`extra.NAME` for keys inside `extra`, compared only where the clip
    recorded them) to the values this recording would write. A clip recorded otherwise, or a folder
    without a readable meta.json, raises `ClipMismatchError` naming the clip, each difference
    (key: on-disk value vs requested) and what to do; nothing is changed on disk.
    """
    path = clip_path(root, town, clip)
    if not path.exists():
        return False
    hint = "record into another --out, or delete that clip folder to record it again"
    if not (path / "meta.json").is_file():
        raise ClipMismatchError(f"{path} exists but holds no meta.json, so it is not a complete clip; {hint}")
    try:
        meta = ClipMeta.from_file(path / "meta.json")
    except ClipFormatError as err:
        raise ClipMismatchError(f"{err}; {hint}") from None
    diffs = [
        f"{key}: {recorded!r} on disk vs {wanted!r} requested"
        for key, wanted in expected.items()
        if (recorded := _recorded(meta, key)) is not _MISSING and not _same(recorded, wanted)
    ]
    if diffs:
        raise ClipMismatchError(f"{path} was recorded with other settings ({'; '.join(diffs)}); {hint}")
    return True


class ClipWriter:
    """Streams Frames into one clip; use as a context manager.

    On a clean exit the clip is committed (renamed into place); on an exception the partial
    folder is deleted and the exception propagates.
    """

    def __init__(
        self,
        root: str | Path,
        town: str,
        clip: str,
        *,
        backend: str,
        fov: float,
        fixed_delta_seconds: float,
        split: str | None = None,
        seed: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = clip_path(root, town, clip)
        if self.path.exists():
            raise FileExistsError(f"{self.path}: clip already exists; delete it or skip it with clip_is_complete()")
        self.partial = self.path.parent / f".{clip}.partial"
        shutil.rmtree(self.partial, ignore_errors=True)  # left by a killed run
        for modality in ("rgb", "semantic", "depth"):
            (self.partial / modality).mkdir(parents=True)
        self._meta: dict[str, Any] = dict(
            backend=backend,
            town=town,
            fov=float(fov),
            fixed_delta_seconds=float(fixed_delta_seconds),
            split=split,
            seed=seed,
            software_version=__version__,
            extra=dict(extra or {}),
        )
        self._poses: list[np.ndarray] = []
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._poses)

    def write(self, frame: Frame) -> None:
        """Append one frame (RGB, labels, depth in CARLA's encoding, camera pose)."""
        if self._size is None:
            self._size = frame.size
        elif frame.size != self._size:
            raise ValueError(f"{self.partial}: frame {len(self)} is {frame.size}, earlier frames were {self._size}")
        name = frame_filename(len(self))
        for modality, image in (
            ("rgb", frame.rgb[:, :, ::-1]),
            ("semantic", frame.semantic),
            ("depth", encode_carla_depth(frame.depth)[:, :, ::-1]),
        ):
            file = self.partial / modality / name
            if not cv2.imwrite(str(file), np.ascontiguousarray(image), _PNG):
                raise OSError(f"{file}: could not write image")
        self._poses.append(np.asarray(frame.camera_to_world, dtype=np.float64))

    def commit(self) -> Path:
        """Write poses and metadata, then move the clip into place; returns its folder."""
        if not self._poses or self._size is None:
            raise ValueError(f"{self.partial}: cannot commit a clip with no frames")
        np.save(self.partial / "poses.npy", np.stack(self._poses))
        meta = ClipMeta(num_frames=len(self), height=self._size[0], width=self._size[1], **self._meta)
        (self.partial / "meta.json").write_text(meta.to_json())
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Delete the partial clip."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
