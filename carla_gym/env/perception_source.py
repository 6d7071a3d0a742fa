"""Where the observation's semantic, depth and ego-motion come from: the model, or the simulator.

Both sources are batched over streams (one per vector-env slot) and return the same arrays, so
`perception="ground_truth"` is a drop-in upper bound and fast path for `perception="model"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from perception.conventions import matrix_to_pose6, relative_pose

from ..sim.contract import Frame
from .observation import EGO_MOTION_BOUND, group_matrix, normalise_depth

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "lite"
# the images of a frame each perception source reads
READS: dict[str, tuple[str, ...]] = {"model": ("rgb",), "ground_truth": ("semantic", "depth")}


class PerceptionInput(NamedTuple):
    """What a perception source reads of a `Frame`: the camera pose and the images of `READS` (the
    others None). A vector env's workers send only this to the main process, whose time per world
    step limits how many worlds it can drive."""

    camera_to_world: np.ndarray
    rgb: np.ndarray | None = None
    semantic: np.ndarray | None = None
    depth: np.ndarray | None = None


def perception_input(frame: Frame, kind: str) -> PerceptionInput:
    """The part of `frame` that perception `kind` ("model" or "ground_truth") reads."""
    return PerceptionInput(frame.camera_to_world, **{name: getattr(frame, name) for name in READS[kind]})


def stack_images(frames: Sequence[PerceptionInput], name: str) -> np.ndarray:
    """One image of every frame, stacked; a clear error where a frame came without it."""
    images = [getattr(f, name) for f in frames]
    if any(image is None for image in images):
        raise ValueError(f"this perception reads each frame's {name!r} image, and a frame came without it")
    return np.stack(images)


def semantic_observation(pooled_group_probs: torch.Tensor) -> np.ndarray:
    """(N, G, h, w) group probabilities, already area-averaged to the observation size, as uint8 x 255."""
    return (pooled_group_probs.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def depth_observation(depth_m: torch.Tensor, obs_size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) metric depth shrunk to the observation size, taking the nearest surface in each cell
    (min-pooling), so a thin pole or a pedestrian does not vanish into the background."""
    nearest = -F.adaptive_max_pool2d(-depth_m.float().unsqueeze(1), obs_size)
    return normalise_depth(nearest.cpu().numpy())


class GroundTruthPerception:
    """Privileged perception from the simulator's labels, depth and camera poses."""

    def __init__(self, num_streams: int, obs_size: tuple[int, int]) -> None:
        self.obs_size = obs_size
        groups = group_matrix()
        # class id -> group index, or len(groups) for classes in no group
        self._lut = torch.from_numpy(np.where(groups.any(0), groups.argmax(0), len(groups))).long()
        self._num_groups = len(groups)
        self._last_pose: list[np.ndarray | None] = [None] * num_streams

    def reset(self, i: int) -> None:
        self._last_pose[i] = None

    def step(self, frames: Sequence[PerceptionInput], streams: list[int] | None = None) -> dict[str, np.ndarray]:
        """Observations for one frame per stream (every stream, or those listed in `streams`)."""
        streams = list(range(len(frames))) if streams is None else streams
        labels = self._lut[torch.from_numpy(stack_images(frames, "semantic")).long()]
        # a float32 one-hot made by scatter: F.one_hot makes int64, more memory to fill, convert and pool
        onehot = torch.zeros(len(frames), self._num_groups + 1, *labels.shape[1:]).scatter_(1, labels[:, None], 1.0)
        depth = torch.from_numpy(stack_images(frames, "depth"))
        semantic = semantic_observation(F.adaptive_avg_pool2d(onehot, self.obs_size)[:, : self._num_groups])
        depth_obs = depth_observation(depth, self.obs_size)
        ego = np.zeros((len(frames), 6), dtype=np.float32)
        for row, (i, frame) in enumerate(zip(streams, frames, strict=False)):
            prev = self._last_pose[i]
            if prev is not None:
                ego[row] = matrix_to_pose6(relative_pose(prev, frame.camera_to_world))
            self._last_pose[i] = frame.camera_to_world
        return {
            "semantic": semantic,
            "depth": depth_obs,
            "ego_motion": np.clip(ego, -EGO_MOTION_BOUND, EGO_MOTION_BOUND),
        }


class PerceivedInWorkers:
    """Perception that a vector env's workers run themselves, each on its own world's frames: ground
    truth, which has no model to batch, so it runs in parallel and the workers send the main process
    only the observation arrays. Here `step` stacks what the worlds sent."""

    def reset(self, i: int) -> None:
        """Nothing here: a worker starts its world's perception afresh with each episode."""

    def step(
        self, perceived: Sequence[dict[str, np.ndarray]], streams: list[int] | None = None
    ) -> dict[str, np.ndarray]:
        """The observation arrays of every world in `perceived` (one dict per world), batched."""
        return {key: np.stack([p[key] for p in perceived]) for key in perceived[0]}


def what_perception_saw(perceived: dict, row: int) -> dict[str, np.ndarray]:
    """Full-size `labels` and `depth_m` of row `row` of a perception step, for the dashboard.

    The model makes them only when asked (`PerceptionOutput.labels` upsamples and takes the argmax
    over every pixel), so stepping without rendering never pays for them. Ground-truth perception
    returns {}: the dashboard then shows the simulator's own labels and depth.
    """
    seen = perceived.get("seen")
    return seen(row) if seen is not None else {}


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def bundled_weights() -> Path:
    """The `lite` weights shipped in the package (trained by `python -m carla_gym.train_perception`)."""
    folder = BUNDLED_WEIGHTS
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder}: this installation has no bundled perception weights; pass weights=FOLDER (made by "
            "`python -m carla_gym.train_perception`) or perception='ground_truth'"
        )
    return folder


class ModelPerception:
    """Learned perception: one batched forward pass of the temporal model for all streams.

    `engine` is `TemporalPerception`'s: "auto" (ONNX Runtime on the CPU, PyTorch on CUDA),
    "torch" or "onnxruntime".
    """

    def __init__(
        self,
        num_streams: int,
        obs_size: tuple[int, int],
        weights: str | Path | None = None,
        device: str = "auto",
        engine: str = "auto",
    ) -> None:
        from perception import TemporalPerception

        self.obs_size = obs_size
        self.model = TemporalPerception.from_weights(
            weights or bundled_weights(), device=resolve_device(device), engine=engine
        )
        self._groups = torch.from_numpy(group_matrix()).to(self.model.device)

    def reset(self, i: int) -> None:
        self.model.reset(i)

    def step(self, frames: Sequence[PerceptionInput], streams: list[int] | None = None) -> dict[str, Any]:
        """Observations for one frame per stream (every stream, or those listed in `streams`), and
        under "seen" what the model saw (see `what_perception_saw`)."""
        out = self.model.step(stack_images(frames, "rgb"), streams=streams)
        return {
            "semantic": semantic_observation(out.pooled_probs(self.obs_size, self._groups)),
            "depth": depth_observation(out.depth, self.obs_size),
            "ego_motion": np.clip(out.pose6.float().cpu().numpy(), -EGO_MOTION_BOUND, EGO_MOTION_BOUND),
            "seen": lambda row: {
                "labels": out.labels[row].to(torch.uint8).cpu().numpy(),
                "depth_m": out.depth[row].float().cpu().numpy(),
            },
        }


def make_perception(
    kind: str,
    num_streams: int,
    obs_size: tuple[int, int],
    weights: str | Path | None = None,
    device: str = "auto",
    engine: str = "auto",
) -> GroundTruthPerception | ModelPerception:
    """The perception source named by the env's `perception` option: "model" or "ground_truth".

    `device` and `engine` ("auto", "torch" or "onnxruntime") apply to the model only.
    """
    size = cast(tuple[int, int], tuple(obs_size))
    if kind == "model":
        return ModelPerception(num_streams, size, weights, device, engine)
    if kind == "ground_truth":
        return GroundTruthPerception(num_streams, size)
    raise ValueError(f"perception must be 'model' or 'ground_truth', got {kind!r}")
