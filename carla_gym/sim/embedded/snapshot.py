"""Save a picture of embedded-world frames: RGB | colourised labels | depth, side by side.

python -m carla_gym.sim.embedded.snapshot --out docs/images/embedded_frame.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from perception.conventions import colorize

from ..contract import Frame
from ..registry import make_backend
from .backend import EmbeddedBackend


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Planar depth as an RGB picture (log scale 1..200 m, magma; sky black)."""
    d = np.clip((np.log(np.clip(depth, 1.0, 200.0)) / np.log(200.0)), 0, 1)
    img = cv2.applyColorMap(((1.0 - d) * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)[:, :, ::-1]
    img[depth >= 999.0] = 0
    return img


def panel(frame: Frame) -> np.ndarray:
    """One row: RGB, labels in CARLA's palette, depth."""
    gap = np.full((frame.rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([frame.rgb, gap, colorize(frame.semantic), gap, depth_image(frame.depth)], axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/images/embedded_frame.png"))
    p.add_argument("--towns", default="offset_downtown,lakeside_village,harbour_district")
    p.add_argument("--steps", type=int, default=60, help="autopilot steps before the picture")
    p.add_argument("--size", default="256x512")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    rows = []
    for i, town in enumerate(args.towns.split(",")):
        with make_backend("embedded", town=town, size=(h, w)) as backend:
            frame = backend.reset(seed=args.seed + i)
            for _ in range(args.steps):
                frame = backend.step(cast(EmbeddedBackend, backend).autopilot_control())
            rows.append(panel(frame))
            rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(rows[:-1])[:, :, ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
