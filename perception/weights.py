"""Weights folders: `model.safetensors` (tensors only, no pickle) + `config.json` (what the tensors are).

config.json holds the preset and its full architecture config, the number and names of classes,
the input size, the input normalisation, what the weights were trained on, the software version
and evaluation metrics. `load_weights` rebuilds the model from it and checks every tensor's name,
shape and values (finite; BatchNorm variances not negative) and the normalisation in config.json,
naming the first problem, so a folder never loads silently into the wrong network or gives NaN outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file, save_file

from .atomic_files import write_atomic
from .conventions import CLASS_NAMES
from .models import IMAGENET_MEAN, IMAGENET_STD, MAX_DEPTH_M, MIN_DEPTH_M, PerceptionPipeline, PresetConfig, build_model
from .portable_paths import portable_path

_SAFETENSORS_ERROR = getattr(safetensors, "SafetensorError", RuntimeError)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "carla-perception-gym.weights"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights folder that cannot be read or does not match the model (the message names the path or tensor)."""


def software_version() -> str:
    """The installed package version (or `0.0.0+unknown` in a bare checkout)."""
    try:
        return version("carla-perception-gym")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def _write_folder(folder: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write model.safetensors and config.json into `folder`, each replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT_NAME}))
    write_atomic(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))


def save_weights(
    model: PerceptionPipeline,
    folder: str | Path,
    *,
    training_data: str | dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    input_size: tuple[int, int] | None = None,
) -> Path:
    """Write `model`'s tensors and config to `folder` (created if needed; files replaced atomically).

    `training_data` describes what the weights were trained on (e.g. towns, clip count, backend),
    `metrics` the evaluation results, `extra` anything else worth keeping. Returns the folder.
    """
    if getattr(model, "batchnorm_folded", False):
        raise ValueError(
            "this model has its BatchNorms folded for inference (TemporalPerception); save the original, unfolded model"
        )
    folder = Path(folder)
    config: PresetConfig = model.config
    names = list(class_names or (CLASS_NAMES if model.num_classes == len(CLASS_NAMES) else range(model.num_classes)))
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "preset": config.name,
        "architecture": config.to_dict(),
        "num_classes": model.num_classes,
        "class_names": [str(n) for n in names],
        "input_size": list(input_size or config.input_size),
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": "uint8 / 255"},
        "depth": {
            "unit": "metres, planar (along the optical axis)",
            "output": "log-depth",
            "range": [MIN_DEPTH_M, MAX_DEPTH_M],
        },
        "pose": "pose6 = (x, y, z, roll, pitch, yaw), metres and radians, inv(M_{t-1}) @ M_t",
        "training_data": training_data if training_data is not None else "untrained (random initialisation)",
        "software_version": software_version(),
        "torch_version": torch.__version__,
        "metrics": metrics or {},
        "extra": extra or {},
    }
    _write_folder(folder, {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, meta)
    return folder


def read_weights_config(folder: str | Path) -> dict[str, Any]:
    """The parsed config.json of a weights folder; clear errors for a missing folder or a bad file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"weights folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"weights config {path} does not exist")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"weights config {path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or "preset" not in config:
        raise WeightsError(f"weights config {path} has no 'preset' entry")
    return config


def weights_lineage(folder: str | Path) -> dict[str, Any]:
    """How the weights in `folder` were made: their training command and seconds and, for weights
    fine-tuned from others, the same of those (`init_from`, nested). A run started with `--init-from`
    records this, so a weights folder names every command of its recipe."""
    extra = read_weights_config(folder).get("extra") or {}
    return {key: extra[key] for key in ("command", "train_seconds", "init_from") if key in extra}


def weights_record(folder: str | Path) -> dict[str, str]:
    """How a result file names the weights it scored: the folder (`portable_path`) and the SHA-256 of its tensors
    file (which weights the path held then: bundled weights change between releases)."""
    digest = hashlib.sha256((Path(folder).expanduser() / WEIGHTS_FILE).read_bytes()).hexdigest()
    return {"weights": portable_path(folder), "weights_sha256": digest}


def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str) -> None:
    """Raise `WeightsError` naming the first tensor that is missing, unexpected or of another shape."""
    for name, tensor in expected.items():
        if name not in found:
            raise WeightsError(f"{source}: missing tensor {name!r} (expected shape {tuple(tensor.shape)})")
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {tuple(found[name].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    for name in found:
        if name not in expected:
            raise WeightsError(f"{source}: unexpected tensor {name!r} (not in the model)")


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise `WeightsError` naming the first floating-point tensor that holds NaN or inf, or a BatchNorm
    `running_var` with a negative entry (either turns every output into NaN)."""
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            raise WeightsError(f"{source}: tensor {name!r} holds {nan} NaN and {inf} infinite value(s)")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise WeightsError(f"{source}: tensor {name!r} (a variance) has negative entries")


def check_config_values(config: dict[str, Any], source: str) -> None:
    """Raise `WeightsError` when config.json's preset disagrees with its architecture, or its input size or
    normalisation is not usable (the normalisation `std` divides every input pixel: it must be finite and > 0)."""
    arch = config.get("architecture")
    if isinstance(arch, dict) and "name" in arch and arch["name"] != config["preset"]:
        raise WeightsError(
            f"{source}: 'preset' is {config['preset']!r} but 'architecture' describes "
            f"{arch['name']!r}; the file was edited or mixed up"
        )

    def numbers(value: Any, n: int) -> bool:
        return (
            isinstance(value, list)
            and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        )

    norm = config.get("normalization", {})
    if not isinstance(norm, dict):
        raise WeightsError(f"{source}: 'normalization' must be an object with 'mean' and 'std', got {norm!r}")
    for key in ("mean", "std"):
        if key in norm and not numbers(norm[key], 3):
            raise WeightsError(f"{source}: normalization {key!r} must be 3 finite numbers, got {norm[key]!r}")
    if "std" in norm and min(norm["std"]) <= 0:
        raise WeightsError(f"{source}: normalization 'std' must be positive, got {norm['std']!r}")
    size = config.get("input_size")
    if size is not None and not (numbers(size, 2) and all(isinstance(v, int) and v > 0 for v in size)):
        raise WeightsError(f"{source}: 'input_size' must be [height, width], two positive integers, got {size!r}")


def load_weights(
    folder: str | Path,
    *,
    preset: str | None = None,
    device: str | torch.device = "cpu",
    model: PerceptionPipeline | None = None,
) -> PerceptionPipeline:
    """Build the pipeline described by a weights folder and load its tensors (safetensors, never pickle).

    `preset`, when given, must match the folder's preset. With `model`, the tensors are loaded into
    that model instead (its preset must match). The returned model carries the parsed config as
    `model.weights_config` and is in eval mode.
    """
    folder = Path(folder)
    config = read_weights_config(folder)
    check_config_values(config, str(folder / CONFIG_FILE))
    expected = preset if preset is not None else (model.config.name if model is not None else None)
    if expected is not None and config["preset"] != expected:
        raise WeightsError(f"{folder / CONFIG_FILE}: weights are for preset {config['preset']!r}, not {expected!r}")
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        tensors = load_file(str(path), device="cpu")
    except (_SAFETENSORS_ERROR, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    check_finite(tensors, str(path))
    if model is None:
        try:
            arch = PresetConfig.from_dict(config["architecture"]) if "architecture" in config else config["preset"]
            model = build_model(arch, num_classes=int(config.get("num_classes", len(CLASS_NAMES))), device=device)
        except (TypeError, ValueError, KeyError) as e:
            raise WeightsError(f"{folder / CONFIG_FILE}: cannot build the model it describes: {e}") from e
        try:
            check_state_dict(model.state_dict(), tensors, str(path))
        except WeightsError as e:
            raise WeightsError(
                f"{folder}: the tensors of {WEIGHTS_FILE} are not those of the network that "
                f"{CONFIG_FILE} describes (preset {config['preset']!r}, "
                f"{model.num_classes} classes): {e}"
            ) from None
    else:
        check_state_dict(model.state_dict(), tensors, str(path))
    model.load_state_dict(tensors)
    model.weights_config = config
    return model.to(device).eval()


def half_precision_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a weights folder with its floating-point tensors stored as float16 (half the size, for bundling).

    `load_weights` casts them back to the model's float32; config.json records `storage_dtype`."""
    src, dst = Path(src), Path(dst)
    config = read_weights_config(src)
    tensors = load_file(str(src / WEIGHTS_FILE), device="cpu")
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    _write_folder(dst, half, {**config, "storage_dtype": "float16"})
    return dst
