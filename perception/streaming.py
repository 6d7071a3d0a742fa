"""Streaming inference: `TemporalPerception` keeps one recurrent state per stream (one per vector env).

    perception = TemporalPerception.from_weights("weights/lite")   # or .from_preset("lite")
    perception.reset(i)                   # at stream i's episode start
    out = perception.step(rgb_batch)      # uint8 (N, H, W, 3) camera frames, any H x W
    out.labels, out.depth, out.pose6, out.features

Frames are resized to the model's input size and normalised inside; outputs are at the model's
input size. Everything runs under `torch.inference_mode`. On CUDA the model runs channels-last
under bf16 (or fp16) autocast; on CPU it runs channels-last in float32 with BatchNorm folded into
the convolutions (measured faster there; CPU autocast is slower on most CPUs, so it stays off).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck

from .conventions import CLASS_NAMES
from .models import PerceptionPipeline, PipelineState, build_model, normalize, resize_images
from .models.preprocess import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class PerceptionOutput:
    """One step's predictions for N streams, as tensors on the pipeline's device, at the model's input size.

    - `probs` (N, C, H, W) float32 class probabilities; `labels` (N, H, W) int64 class ids (argmax)
    - `depth` (N, H, W) float32 planar depth in metres, in [0.5, 1000]
    - `pose6` (N, 6) ego-motion from the previous frame: (x, y, z) metres, (roll, pitch, yaw) radians,
      camera t in camera t-1's frame (`inv(M_{t-1}) @ M_t`); zeros on a stream's first frame
    - `matrix` (N, 4, 4) the same motion as a rigid transform (identity on a first frame)
    - `features` (N, feature_dim) float32 compact state: the spatially averaged ConvGRU state
      (hidden channels: 96 for `lite`, 2048 for `full`) followed by the ego-motion GRU state (128)
    """

    probs: torch.Tensor
    labels: torch.Tensor
    depth: torch.Tensor
    pose6: torch.Tensor
    matrix: torch.Tensor
    features: torch.Tensor

    def numpy(self) -> dict[str, np.ndarray]:
        """The fields as NumPy arrays (copied to the CPU)."""
        return {k: getattr(self, k).detach().cpu().numpy() for k in ("probs", "labels", "depth", "pose6", "matrix", "features")}


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold eval-mode BatchNorm2d layers into the convolutions right before them, in place (inference only).

    Only folds where the BatchNorm provably follows the conv: consecutive children of a Sequential
    (or torchvision's IntermediateLayerGetter), and ResNet blocks' `convK` -> `bnK` pairs.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(module, (nn.Sequential, IntermediateLayerGetter)):
        names = list(module._modules)
        pairs = list(zip(names, names[1:]))
    elif isinstance(module, (Bottleneck, BasicBlock)):
        pairs = [(f"conv{k}", f"bn{k}") for k in (1, 2, 3) if hasattr(module, f"conv{k}")]
    for conv_name, bn_name in pairs:
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            module._modules[conv_name] = fuse_conv_bn_eval(conv.eval(), bn.eval())
            module._modules[bn_name] = nn.Identity()
    for child in module.children():
        fold_batchnorm(child)
    module.batchnorm_folded = True  # save_weights refuses such a model: its tensors no longer match the preset
    return module


def _as_frames(rgb_batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3), NumPy or tensor -> (N, 3, H, W) uint8 tensor on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(rgb_batch)) if isinstance(rgb_batch, np.ndarray) else rgb_batch
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 camera frames, got dtype {x.dtype}")
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2)


class TemporalPerception:
    """Segmentation, depth, ego-motion and a feature vector for N camera streams, with memory.

    Each stream has its own recurrent state. The number of streams is set by the first `step`;
    a `step` with a different number of streams starts every stream afresh. `reset(i)` makes
    stream i start afresh on its next frame (zero memory, zero ego-motion).

    The model is put in eval mode; with `fuse=True` (the default on CPU) a copy of it has its
    BatchNorms folded into the convolutions (pass `copy_model=False` to fold in place).
    """

    def __init__(self, model: PerceptionPipeline, device: str | torch.device | None = None,
                 input_size: tuple[int, int] | None = None, channels_last: bool | None = None,
                 autocast: bool | None = None, fuse: bool | None = None, copy_model: bool = True,
                 class_names: Sequence[str] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        cuda = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else channels_last
        self.autocast = cuda if autocast is None else autocast
        self.autocast_dtype = torch.bfloat16 if (cuda and torch.cuda.is_bf16_supported()) or not cuda else torch.float16
        fuse = (not cuda) if fuse is None else fuse
        if fuse and copy_model:
            model = copy.deepcopy(model)
        model = model.to(self.device).eval()
        if fuse:
            with torch.no_grad():
                fold_batchnorm(model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.input_size = tuple(input_size or model.config.input_size)
        self.class_names = tuple(class_names or (CLASS_NAMES if model.num_classes == len(CLASS_NAMES) else
                                                 [str(i) for i in range(model.num_classes)]))
        self.mean, self.std = tuple(mean), tuple(std)
        self._state: PipelineState | None = None
        self._first: np.ndarray | None = None  # (N,) streams that start afresh next step

    @classmethod
    def from_preset(cls, preset: str = "lite", num_classes: int = len(CLASS_NAMES), device: str | torch.device = "cpu",
                    **kwargs) -> TemporalPerception:
        """An untrained (randomly initialised) pipeline of a preset: for tests, benchmarks and training."""
        return cls(build_model(preset, num_classes=num_classes, device=device), device=device, copy_model=False, **kwargs)

    @classmethod
    def from_weights(cls, folder: str | Path, device: str | torch.device = "cpu", **kwargs) -> TemporalPerception:
        """A trained pipeline from a weights folder (`model.safetensors` + `config.json`, see `save_weights`)."""
        from .weights import load_weights

        model = load_weights(folder, device=device)
        cfg = model.weights_config
        norm = cfg.get("normalization", {})
        kwargs.setdefault("class_names", cfg.get("class_names"))
        kwargs.setdefault("mean", tuple(norm.get("mean", IMAGENET_MEAN)))
        kwargs.setdefault("std", tuple(norm.get("std", IMAGENET_STD)))
        kwargs.setdefault("input_size", tuple(cfg.get("input_size", model.config.input_size)))
        return cls(model, device=device, copy_model=False, **kwargs)

    @property
    def num_streams(self) -> int:
        """Streams seen by the last `step` (0 before the first)."""
        return 0 if self._first is None else int(self._first.shape[0])

    @property
    def feature_dim(self) -> int:
        """Size of `PerceptionOutput.features`: ConvGRU hidden channels + 128."""
        return self.model.feature_dim

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def reset(self, i: int | Sequence[int] | None = None) -> None:
        """Make stream `i` (several, or all when None) start afresh on its next frame."""
        if self._first is None:
            return
        if i is None:
            self._first[:] = True
            return
        idx = [i] if isinstance(i, (int, np.integer)) else list(i)
        for k in idx:
            if not 0 <= k < self._first.shape[0]:
                raise IndexError(f"stream {k} out of range for {self._first.shape[0]} streams")
        self._first[idx] = True

    def preprocess(self, rgb_batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 camera frames (N, H, W, 3) -> normalised float (N, 3, *input_size) on the device."""
        x = _as_frames(rgb_batch, self.device).float().div_(255.0)
        x = normalize(resize_images(x, self.input_size), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def step(self, rgb_batch: np.ndarray | torch.Tensor, streams: Sequence[int] | None = None) -> PerceptionOutput:
        """Advance streams by one frame: uint8 (N, H, W, 3) frames -> batched `PerceptionOutput`.

        By default the batch is every stream (stream i is row i). With `streams`, the batch holds
        one frame for each listed stream and only those advance (a vector env resetting some of
        its worlds); the others keep their state. That needs a full-batch step first, which sets
        the number of streams.
        """
        x = self.preprocess(rgb_batch)
        if streams is not None:
            return self._step_subset(x, list(streams))
        n = x.shape[0]
        if self._first is None or self._first.shape[0] != n:
            self._state = None
            self._first = np.ones(n, dtype=bool)
        first = torch.from_numpy(self._first).to(self.device) if self._first.any() else None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast):
            out = self.model.step(x, self._state, first, upsample_seg=False)
        self._state = out["state"]
        self._first = np.zeros(n, dtype=bool)
        return self._output(out)

    def _step_subset(self, x: torch.Tensor, streams: list[int]) -> PerceptionOutput:
        if self._state is None:
            raise RuntimeError("step(..., streams=...) needs one step over all streams first")
        if len(streams) != x.shape[0] or len(set(streams)) != len(streams):
            raise ValueError(f"streams {streams} must list {x.shape[0]} distinct streams, one per frame")
        if not all(0 <= k < self.num_streams for k in streams):
            raise IndexError(f"streams {streams} out of range for {self.num_streams} streams")
        idx = torch.tensor(streams, device=self.device)
        fields = ("geometry", "ego", "embedding")
        sub = PipelineState(*(None if getattr(self._state, f) is None else getattr(self._state, f)[idx] for f in fields))
        first = torch.from_numpy(self._first[streams]).to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast):
            out = self.model.step(x, sub, first if first.any() else None, upsample_seg=False)
        for f in fields:
            full, new = getattr(self._state, f), getattr(out["state"], f)
            if full is not None and new is not None:
                full = full.clone()
                full[idx] = new.to(full.dtype)
                setattr(self._state, f, full)
        self._first[streams] = False
        return self._output(out)

    def _output(self, out: dict) -> PerceptionOutput:
        # softmax at the head's resolution, then bilinear upsampling: a convex blend of
        # distributions is a distribution, and it is much cheaper than a full-size softmax
        # (channels-last: on CPU both the upsampling and the argmax over classes are several times faster)
        low = out["seg_logits"].float().softmax(dim=1).contiguous(memory_format=torch.channels_last)
        probs = F.interpolate(low, size=self.input_size, mode="bilinear", align_corners=False)
        return PerceptionOutput(
            probs=probs,
            labels=probs.argmax(dim=1),
            depth=out["depth"].float()[:, 0],
            pose6=out["pose6"].float(),
            matrix=out["matrix"].float(),
            features=out["features"].float(),
        )
