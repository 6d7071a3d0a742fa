"""Streaming inference: `TemporalPerception` keeps one recurrent state per stream (one per vector env).

    perception = TemporalPerception.from_weights("weights/lite")   # or .from_preset("lite")
    perception.reset(i)                   # at stream i's episode start
    out = perception.step(rgb_batch)      # uint8 (N, H, W, 3) camera frames, any H x W
    out.labels, out.depth, out.pose6, out.features

Frames are resized to the model's input size and normalised inside; outputs are at the model's
input size, except the class probabilities, kept at the segmentation head's resolution until
full-size `probs` or `labels` are read (see `PerceptionOutput`). Everything runs under `torch.inference_mode`. On CUDA the model runs channels-last
under bf16 (or fp16) autocast; on CPU it runs channels-last in float32 with BatchNorm folded into
the convolutions (measured faster there; CPU autocast is slower on most CPUs, so it stays off).

Engines: `engine="auto"` (the default) runs the step on ONNX Runtime on the CPU and on PyTorch on
CUDA; `"torch"` and `"onnxruntime"` choose one. The ONNX Runtime engine exports the step on first
use and caches the export (`perception.onnx_engine`); when onnxruntime is missing or the export
fails, it warns once and runs on PyTorch. Both engines give the same outputs and behaviour.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck

from .conventions import CLASS_NAMES
from .models import (
    PerceptionPipeline,
    PipelineState,
    build_model,
    normalize,
    resize_images,
)
from .models.preprocess import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from .onnx_engine import OnnxStep

ENGINES = ("auto", "torch", "onnxruntime")


@lru_cache(maxsize=32)
def area_resample_matrix(n_in: int, n_up: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in): bilinear upsampling of n_in samples to n_up (align_corners=False), then adaptive
    average pooling to n_out, as one linear map along one axis.

    Both operations are separable and linear, so pooling the upsampled probabilities of an image
    equals `A_h @ P @ A_w.T` on the small probabilities, without ever building the large ones.
    Cached: the env asks for the same sizes every step (treat the result as read-only).
    """
    eye = torch.eye(n_in, dtype=torch.float64)[None, None]
    up = F.interpolate(eye, size=(n_up, n_in), mode="bilinear", align_corners=False)[0, 0]  # (n_up, n_in)
    pool = F.adaptive_avg_pool2d(torch.eye(n_up, dtype=torch.float64)[None, None], (n_out, n_up))[0, 0]  # (n_out, n_up)
    return (pool @ up).float()


@dataclass
class PerceptionOutput:
    """One step's predictions for N streams, as tensors on the pipeline's device.

    - `seg_probs` (N, C, h, w) float32 class probabilities at the segmentation head's resolution
      (a fraction of the input size); `probs` (N, C, H, W) are they bilinearly upsampled to the input size, and `labels`
      (N, H, W) int64 class ids their argmax. Both are computed on first access (and kept), so a
      caller that needs neither, or only `pooled_probs`, does not pay for full-size maps.
    - `depth` (N, H, W) float32 planar depth in metres at the input size, in [0.5, 1000]
    - `pose6` (N, 6) ego-motion from the previous frame: (x, y, z) metres, (roll, pitch, yaw) radians,
      camera t in camera t-1's frame (`inv(M_{t-1}) @ M_t`); zeros on a stream's first frame
    - `matrix` (N, 4, 4) the same motion as a rigid transform (identity on a first frame)
    - `features` (N, feature_dim) float32 compact state: the spatially averaged ConvGRU state
      (hidden channels: 96 for `lite`, 2048 for `full`) followed by the ego-motion GRU state (128)
    """

    seg_probs: torch.Tensor
    depth: torch.Tensor
    pose6: torch.Tensor
    matrix: torch.Tensor
    features: torch.Tensor

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the full-size outputs."""
        return int(self.depth.shape[-2]), int(self.depth.shape[-1])

    @cached_property
    def probs(self) -> torch.Tensor:
        # softmax happened at the head's resolution: a convex blend of distributions is a distribution
        # (channels-last: on CPU both the upsampling and the argmax over classes are several times faster)
        low = self.seg_probs.float().contiguous(memory_format=torch.channels_last)
        return F.interpolate(low, size=self.input_size, mode="bilinear", align_corners=False)

    @cached_property
    def labels(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def pooled_probs(self, size: tuple[int, int], weights: torch.Tensor | None = None) -> torch.Tensor:
        """`probs` area-averaged to `size` (N, C, h, w), from `seg_probs` without full-size maps.

        `weights` (G, C) first mixes the classes into G groups (e.g. summing classes into groups).
        Equal to `F.adaptive_avg_pool2d(probs, size)` up to float rounding.
        """
        p = self.seg_probs.float()
        if weights is not None:
            p = torch.einsum("gc,nchw->nghw", weights.to(p), p)
        (H, W), (h, w) = self.input_size, p.shape[-2:]
        a_h = area_resample_matrix(h, H, size[0]).to(p.device)
        a_w = area_resample_matrix(w, W, size[1]).to(p.device)
        return torch.einsum("oh,nchw,pw->ncop", a_h, p, a_w)

    def numpy(self) -> dict[str, np.ndarray]:
        """The full-size fields and the rest as NumPy arrays (copied to the CPU)."""
        return {
            k: getattr(self, k).detach().cpu().numpy()
            for k in ("probs", "labels", "depth", "pose6", "matrix", "features")
        }


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold eval-mode BatchNorm2d layers into the convolutions right before them, in place (inference only).

    Only folds where the BatchNorm provably follows the conv: consecutive children of a Sequential
    (or torchvision's IntermediateLayerGetter), and ResNet blocks' `convK` -> `bnK` pairs.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(module, (nn.Sequential, IntermediateLayerGetter)):
        names = list(module._modules)
        pairs = list(zip(names, names[1:], strict=False))
    elif isinstance(module, (Bottleneck, BasicBlock)):
        pairs = [(f"conv{k}", f"bn{k}") for k in (1, 2, 3) if hasattr(module, f"conv{k}")]
    for conv_name, bn_name in pairs:
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            module._modules[conv_name] = fuse_conv_bn_eval(conv.eval(), bn.eval())
            module._modules[bn_name] = nn.Identity()
    for child in module.children():
        fold_batchnorm(child)
    # save_weights refuses such a model: its tensors no longer match the preset (torch types the value Tensor | Module)
    module.batchnorm_folded = True  # type: ignore[assignment]
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

    `engine`: "auto" (ONNX Runtime on the CPU unless `autocast` is asked for, PyTorch on CUDA),
    "torch" or "onnxruntime" (CPU only). `cache_dir` is where ONNX exports are cached (default
    `perception.onnx_engine.default_cache_dir()`); `threads` is ONNX Runtime's intra-op thread
    count (default: `torch.get_num_threads()` when the engine starts).
    """

    def __init__(
        self,
        model: PerceptionPipeline,
        device: str | torch.device | None = None,
        input_size: tuple[int, int] | None = None,
        channels_last: bool | None = None,
        autocast: bool | None = None,
        fuse: bool | None = None,
        copy_model: bool = True,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        engine: str = "auto",
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        cuda = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else channels_last
        self.autocast = cuda if autocast is None else autocast
        if engine == "onnxruntime" and (self.device.type != "cpu" or autocast):
            raise ValueError(
                f"engine='onnxruntime' runs in float32 on the CPU, got device {self.device} "
                f"with autocast={autocast}; use engine='torch' or 'auto'"
            )
        self.engine = (
            ("onnxruntime" if self.device.type == "cpu" and not self.autocast else "torch")
            if engine == "auto"
            else engine
        )
        self.cache_dir, self.threads = cache_dir, threads
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
        self.input_size = cast(tuple[int, int], tuple(input_size or model.config.input_size))
        self.class_names = tuple(
            class_names
            or (CLASS_NAMES if model.num_classes == len(CLASS_NAMES) else [str(i) for i in range(model.num_classes)])
        )
        self.mean, self.std = tuple(mean), tuple(std)
        self._state: PipelineState | None = None
        self._onnx: OnnxStep | None = None  # the ONNX Runtime step, made on first use
        self._np_state: dict[str, np.ndarray] = {}  # its state per stream
        self._first: np.ndarray | None = None  # (N,) streams that start afresh next step

    @classmethod
    def from_preset(
        cls, preset: str = "lite", num_classes: int = len(CLASS_NAMES), device: str | torch.device = "cpu", **kwargs
    ) -> TemporalPerception:
        """An untrained (randomly initialised) pipeline of a preset: for tests, benchmarks and training."""
        return cls(
            build_model(preset, num_classes=num_classes, device=device), device=device, copy_model=False, **kwargs
        )

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
        if self.engine == "onnxruntime" and self._onnx is None:
            self._start_onnx()
        if self.engine == "onnxruntime":
            return self._step_onnx(rgb_batch, streams)
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

    def _check_streams(self, streams: list[int], n: int) -> np.ndarray:
        """Check a `streams` selection of `n` frames; returns the (N,) first-step mask it indexes."""
        if self._first is None:
            raise RuntimeError("step(..., streams=...) needs one step over all streams first")
        if len(streams) != n or len(set(streams)) != len(streams):
            raise ValueError(f"streams {streams} must list {n} distinct streams, one per frame")
        if not all(0 <= k < self.num_streams for k in streams):
            raise IndexError(f"streams {streams} out of range for {self.num_streams} streams")
        return self._first

    def _start_onnx(self) -> None:
        """Load or export the ONNX Runtime step; on any failure warn once and run on PyTorch."""
        try:
            from .onnx_engine import OnnxStep

            self._onnx = OnnxStep(self.model, self.input_size, self.mean, self.std, self.cache_dir, self.threads)
        except ImportError as e:
            self.engine = "torch"
            warnings.warn(
                f"the onnxruntime engine is unavailable ({e}); perception runs on PyTorch", RuntimeWarning, stacklevel=3
            )
        except Exception as e:  # noqa: BLE001 - an exporter or runtime limitation must not stop the caller
            self.engine = "torch"
            warnings.warn(
                f"exporting the perception step to ONNX failed ({type(e).__name__}: {e}); perception runs on PyTorch",
                RuntimeWarning,
                stacklevel=3,
            )

    def _pixels(self, rgb_batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 camera frames -> float32 (N, 3, *input_size) pixels in [0, 255] (the ONNX graph normalises)."""
        x = _as_frames(rgb_batch, torch.device("cpu"))
        if tuple(x.shape[-2:]) != self.input_size:
            x = resize_images(x.float(), self.input_size)
        return x.to(torch.float32, memory_format=torch.contiguous_format).numpy()

    def _step_onnx(self, rgb_batch: np.ndarray | torch.Tensor, streams: Sequence[int] | None) -> PerceptionOutput:
        from .onnx_engine import RESULT_NAMES, STATE_NAMES

        if self._onnx is None:
            raise RuntimeError("the ONNX Runtime step is not started (step() starts it)")
        onnx = self._onnx
        x = self._pixels(rgb_batch)
        n = x.shape[0]
        if streams is None:
            if self._first is None or self._first.shape[0] != n:
                self._first = np.ones(n, dtype=bool)
                self._np_state = onnx.zero_state(n)
            out = onnx.run(x, self._np_state, self._first)
            self._np_state = {name: out[f"{name}_out"] for name in STATE_NAMES}
            self._first = np.zeros(n, dtype=bool)
        else:
            streams = list(streams)
            first = self._check_streams(streams, n)
            idx = np.asarray(streams)
            out = onnx.run(x, {k: v[idx] for k, v in self._np_state.items()}, first[idx])
            for name in STATE_NAMES:
                self._np_state[name][idx] = out[f"{name}_out"]
            first[idx] = False
        return PerceptionOutput(**{name: torch.from_numpy(out[name]) for name in RESULT_NAMES})

    def _step_subset(self, x: torch.Tensor, streams: list[int]) -> PerceptionOutput:
        first_mask = self._check_streams(streams, x.shape[0])
        idx = torch.tensor(streams, device=self.device)
        fields = ("geometry", "ego", "embedding")
        sub = PipelineState(
            *(None if getattr(self._state, f) is None else getattr(self._state, f)[idx] for f in fields)
        )
        first = torch.from_numpy(first_mask[streams]).to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast):
            out = self.model.step(x, sub, first if first.any() else None, upsample_seg=False)
        for f in fields:
            full, new = getattr(self._state, f), getattr(out["state"], f)
            if full is not None and new is not None:
                full = full.clone()
                full[idx] = new.to(full.dtype)
                setattr(self._state, f, full)
        first_mask[streams] = False
        return self._output(out)

    def _output(self, out: dict) -> PerceptionOutput:
        return PerceptionOutput(
            seg_probs=out["seg_logits"].float().softmax(dim=1),
            depth=out["depth"].float()[:, 0],
            pose6=out["pose6"].float(),
            matrix=out["matrix"].float(),
            features=out["features"].float(),
        )
