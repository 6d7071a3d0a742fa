"""The streaming step on ONNX Runtime: the CPU engine of `TemporalPerception`.

The pipeline's step is exported once per (weights, input size, software version) with its
recurrent state as explicit inputs and outputs:

    inputs   image (N, 3, H, W) float32 pixels in [0, 255], geometry, ego, embedding (the state),
             first (N,) bool (streams that start afresh)
    outputs  seg_probs, depth, pose6, matrix, features, and the new geometry, ego, embedding

Normalisation and the softmax at the segmentation head's resolution are part of the graph, so one
session call is the whole step; full-size probabilities and labels are made by `PerceptionOutput`
when asked for. The
batch axis is dynamic. Exports are cached as `step-<key>.onnx` under `cache_dir` (argument, else
`$CARLA_PERCEPTION_GYM_CACHE`, else `$XDG_CACHE_HOME/carla_perception_gym/onnx`); the key is a
SHA-256 of the exported tensors, the architecture, the input size and normalisation, and the
versions of the exporter and of this code. The key is also stored in the file and checked on
load, so a stale, foreign or damaged file is never used: it is exported again and replaced
atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .atomic_files import write_atomic
from .models import PerceptionPipeline, PipelineState

if TYPE_CHECKING:
    import onnxruntime

CACHE_ENV = "CARLA_PERCEPTION_GYM_CACHE"
OPSET = 17
FORMAT = 2  # bump when the graph's inputs or outputs change
KEEP_FILES = 16  # cached exports kept (least recently used ones are removed beyond this)

STATE_NAMES = ("geometry", "ego", "embedding")
INPUT_NAMES = ("image", *STATE_NAMES, "first")
RESULT_NAMES = ("seg_probs", "depth", "pose6", "matrix", "features")
OUTPUT_NAMES = (*RESULT_NAMES, *(f"{name}_out" for name in STATE_NAMES))


def default_cache_dir() -> Path:
    """`$CARLA_PERCEPTION_GYM_CACHE`, else `$XDG_CACHE_HOME/carla_perception_gym/onnx` (`~/.cache/...`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "carla_perception_gym" / "onnx"


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, written out as max, exp, sum and divide.

    Exported as ONNX's Softmax over the channel axis of an NCHW tensor, ONNX Runtime's CPU kernel transposes the
    whole tensor to put that axis last and back again; these element-wise ops and reductions do not.
    """
    e = (logits - logits.amax(dim=1, keepdim=True)).exp()
    return e / e.sum(dim=1, keepdim=True)


class ExportableStep(nn.Module):
    """One streaming step as a branch-free function of tensors (what gets exported).

    (image 0..255, geometry, ego, embedding, first) -> seg_probs, depth, pose6, matrix,
    features and the new state, with `PerceptionPipeline.step_masked` in between.
    """

    scale: torch.Tensor  # buffers: normalisation folded into the graph
    shift: torch.Tensor

    def __init__(
        self, model: PerceptionPipeline, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        self.model = model
        self.input_size = tuple(input_size)
        mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean_t / std_t).view(1, 3, 1, 1), persistent=False)

    def forward(
        self,
        image: torch.Tensor,
        geometry: torch.Tensor,
        ego: torch.Tensor,
        embedding: torch.Tensor,
        first: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        x = image * self.scale + self.shift
        out = self.model.step_masked(x, PipelineState(geometry, ego, embedding), first, upsample_seg=False)
        state = out["state"]
        # softmax at the head's resolution; `PerceptionOutput` upsamples when full-size maps are asked for
        return (
            channel_softmax(out["seg_logits"].float()),
            out["depth"][:, 0],
            out["pose6"],
            out["matrix"],
            out["features"],
            state.geometry,
            state.ego,
            state.embedding,
        )


def _code_version() -> str:
    """This package's version and a hash of the model and engine sources (their change makes a new export)."""
    try:
        version = metadata.version("carla-perception-gym")
    except metadata.PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(version.encode())
    for path in sorted(
        [Path(__file__).resolve(), *(here / "models").glob("*.py"), *(here / "conventions").glob("*.py")]
    ):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(model: nn.Module, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]) -> str:
    """The cache key: SHA-256 of the model's tensors (names, dtypes, shapes, bytes), its architecture,
    the input size and normalisation, the exporter's versions and this code's version."""
    h = hashlib.sha256()
    for part in (
        repr(getattr(model, "config", type(model).__name__)),
        getattr(model, "num_classes", ""),
        tuple(input_size),
        tuple(mean),
        tuple(std),
        torch.__version__,
        OPSET,
        FORMAT,
        _code_version(),
    ):
        h.update(repr(part).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def export_step(
    model: PerceptionPipeline, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float], key: str = ""
) -> bytes:
    """The serialised ONNX graph of `ExportableStep` (dynamic batch axis; `key` stored as metadata)."""
    import onnx

    step = ExportableStep(model, input_size, mean, std).eval()
    device = next(model.parameters()).device
    with torch.inference_mode(False), torch.no_grad():
        out = model.step(torch.zeros(1, 3, *input_size, device=device), upsample_seg=False)["state"]
        n = 2  # one fresh stream and one continuing one: neither branch of the mask is constant
        state = [
            getattr(out, name).float().expand(n, *getattr(out, name).shape[1:]).contiguous() for name in STATE_NAMES
        ]
        args = (
            torch.full((n, 3, *input_size), 128.0, device=device),
            *state,
            torch.tensor([True, False], device=device),
        )
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                step,
                args,
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a file object; torch's hint says path only
                dynamo=False,
                opset_version=OPSET,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)},
            )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {"carla_perception_gym.key": key})
    return proto.SerializeToString()


def _prune(folder: Path, keep: int = KEEP_FILES) -> None:
    """Remove the least recently used exports beyond the newest `keep`."""
    files = sorted(folder.glob("step-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files[keep:]:
        path.unlink(missing_ok=True)


def cpu_session(
    model: bytes | str | Path, threads: int, profile_prefix: str | None = None
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session of a graph (bytes or a file) with `threads` intra-op threads.

    Idle worker threads sleep instead of spinning: the step shares the cores with the simulator's
    renderer (and other worlds), which spinning threads would starve. With `profile_prefix`, ONNX Runtime's
    profiler records every node's kernel time into a JSON file whose path starts with it (`end_profiling()`
    returns the path).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), so, providers=["CPUExecutionProvider"]
    )


class OnnxStep:
    """An ONNX Runtime session of one model's streaming step, loaded from the cache or exported into it.

    `run(image, state, first)` takes NumPy arrays and returns a dict of NumPy arrays named as
    `OUTPUT_NAMES`. `cache_hit` says whether the session came from a cached file; `path` is that
    file (None when the cache folder could not be written, after one warning).
    """

    def __init__(
        self,
        model: PerceptionPipeline,
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime  # noqa: F401 - missing: ImportError before any export (the caller falls back)

        self.threads = int(threads or torch.get_num_threads())
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.key = fingerprint(model, input_size, mean, std)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.path: Path | None = self.cache_dir / f"step-{self.key[:40]}.onnx"
        self.cache_hit = False
        self.session = self._load_cached()
        if self.session is None:
            data = export_step(model, input_size, mean, std, key=self.key)
            try:
                write_atomic(self.path, lambda p: p.write_bytes(data))
                _prune(self.cache_dir)
            except OSError as e:
                warnings.warn(
                    f"could not cache the ONNX export in {self.cache_dir} ({e}); using it uncached",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.path = None
            self.session = cpu_session(data, self.threads)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.state_shapes = {name: tuple(int(d) for d in shapes[name][1:]) for name in STATE_NAMES}

    def _load_cached(self):
        """The cached session when the file exists and carries this key; None otherwise."""
        if not self.path.is_file():
            return None
        try:
            session = cpu_session(self.path, self.threads)
        except Exception:  # noqa: BLE001 - a damaged or foreign file: exported again and replaced
            return None
        if session.get_modelmeta().custom_metadata_map.get("carla_perception_gym.key") != self.key:
            return None
        try:
            os.utime(self.path)  # recently used: kept by `_prune`
        except OSError:
            pass
        self.cache_hit = True
        return session

    def zero_state(self, n: int) -> dict[str, np.ndarray]:
        """The state of `n` fresh streams (zeros; `first` marks them)."""
        return {name: np.zeros((n, *shape), dtype=np.float32) for name, shape in self.state_shapes.items()}

    def run(self, image: np.ndarray, state: dict[str, np.ndarray], first: np.ndarray) -> dict[str, np.ndarray]:
        """One step: float32 (N, 3, H, W) pixels in [0, 255], the state, (N,) bool -> every output by name."""
        feeds = {"image": image, "first": np.ascontiguousarray(first, dtype=bool), **state}
        return dict(zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), feeds), strict=False))
