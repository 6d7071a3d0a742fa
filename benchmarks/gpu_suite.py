"""One-shot GPU suite: EGL on the NVIDIA driver, `make_vec` env steps/s, batched bf16 perception, `full`.

    python benchmarks/gpu_suite.py --out gpu_suite.json            # on a GPU machine, a few minutes
    python benchmarks/gpu_suite.py --quick --out /tmp/suite.json   # small n: checks the script on a CPU

Sections, each recorded in the JSON (rewritten atomically after every section, so a run cut short
keeps what it measured; a failing section records its error and the suite goes on):

1. `egl`: in a child process, an EGL context and one embedded-world frame: the GL vendor and
   renderer, whether that is the NVIDIA driver, and if not, why (the EGL error, the glvnd vendor
   files, `NVIDIA_DRIVER_CAPABILITIES`). Without it the worlds render with the platform fallback.
2. `env`: env steps/s of `carla_gym.make_vec(n)` with model perception (batched, default engine:
   PyTorch bf16 on CUDA) at a 128x256 camera, for n = 1, 8, 32, 64 (`--env-perception` adds
   ground truth: the worlds and the vector env without the network).
3. `perception`: `lite` streaming frames/s at 128x256 for batches n = 1, 8, 32, 64 (bf16 on CUDA).
4. `full`: `full` preset streaming frames/s at 256x512 (batch 1 and 8).
5. `parity`: the bundled weights over one embedded autopilot drive (128x256, state carried), the
   default engine on this machine's device against float32 PyTorch on the CPU: label agreement,
   depth relative error, ego-motion difference, and each one's mIoU against the simulator's labels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_timing import BLOCK, VecEnv
from perception_timing import device_name, streaming_fps

from perception.streaming import TemporalPerception

EGL_PROBE = r"""
import importlib.util, json, os
if importlib.util.find_spec("triton"):  # before any GL driver loads its LLVM (see the renderer's note)
    import triton
from pathlib import Path
out = {"nvidia_driver_capabilities": os.environ.get("NVIDIA_DRIVER_CAPABILITIES")}
vendor_dirs = ["/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d"]
out["egl_vendor_files"] = sorted(str(p) for d in vendor_dirs if Path(d).is_dir() for p in Path(d).iterdir())
try:
    import moderngl
    ctx = moderngl.create_standalone_context(require=330, backend="egl")
    out["egl"] = {k: ctx.info.get(k) for k in ("GL_VENDOR", "GL_RENDERER", "GL_VERSION")}
    ctx.release()
except Exception as e:
    out["egl_error"] = f"{type(e).__name__}: {e}"
try:
    from carla_gym.sim import make_backend
    b = make_backend("embedded", size=(128, 256), seed=0)
    b.reset(seed=0)
    f = b.step(b.autopilot_control())
    info = b.renderer.ctx.info
    out["world"] = {"GL_VENDOR": info.get("GL_VENDOR"), "GL_RENDERER": info.get("GL_RENDERER"),
                    "rgb_std": float(f.rgb.std()), "renders": bool(f.rgb.std() > 1.0)}
    b.close()
except Exception as e:
    out["world_error"] = f"{type(e).__name__}: {e}"
print("EGL_PROBE " + json.dumps(out))
"""


def check_egl(timeout: float = 120.0) -> dict:
    """Probe EGL and the embedded renderer in a child process (GL state must not enter this one)."""
    proc = subprocess.run(
        [sys.executable, "-c", EGL_PROBE], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("EGL_PROBE ")]
    if not lines:
        return {"nvidia": False, "why_not": f"probe failed (exit {proc.returncode}): {proc.stderr[-2000:]}"}
    out = json.loads(lines[-1][len("EGL_PROBE ") :])
    names = " ".join(str(v) for v in (out.get("world") or out.get("egl") or {}).values())
    out["nvidia"] = "NVIDIA" in names.upper()
    if not out["nvidia"]:
        if "egl_error" in out:
            why = f"EGL failed ({out['egl_error']})"
        elif out.get("egl"):
            why = (
                f"EGL gave {out['egl'].get('GL_VENDOR')} / {out['egl'].get('GL_RENDERER')}, not the NVIDIA driver "
                "(no NVIDIA EGL vendor file in egl_vendor_files, or NVIDIA_DRIVER_CAPABILITIES lacks 'graphics')"
            )
        else:
            why = "no EGL context"
        out["why_not"] = why + "; the worlds render with the fallback named under 'world'"
    return out


def env_rate(n: int, perception: str, steps: int) -> dict:
    """Env steps/s of `make_vec(n)` with `perception` on the default engine."""
    t0 = time.perf_counter()
    runner = VecEnv(n, perception, "auto", None)
    try:
        start_s = time.perf_counter() - t0
        model = getattr(runner.vec.vector_env.perception, "model", None)  # ground truth has none
        runner.block()  # warm-up
        rates = [runner.block() for _ in range(max(1, steps // BLOCK))]
    finally:
        runner.close()
    return {
        "n": n,
        "perception": perception,
        "env_steps_per_s": statistics.median(rates),
        "engine": model.engine if model is not None else "none",
        "device": str(model.device) if model is not None else "cpu",
        "start_s": start_s,
    }


def env_rates(ns: list[int], steps: int, perceptions: list[str]) -> list[dict]:
    """`env_rate` for each perception mode and n; a row that fails records its error and the next one runs."""
    results = []
    for perception in perceptions:
        for n in ns:
            try:
                row = env_rate(n, perception, steps)
                print(
                    f"  make_vec({n}), {perception}: {row['env_steps_per_s']:.1f} env steps/s "
                    f"({row['engine']} on {row['device']}; started in {row['start_s']:.1f} s)",
                    flush=True,
                )
            except Exception as e:  # noqa: BLE001 - one failing row must not lose the others
                row = {"n": n, "perception": perception, "error": f"{type(e).__name__}: {e}"}
                print(f"  make_vec({n}), {perception}: failed: {row['error']}", flush=True)
            results.append(row)
    return results


def perception_rates(
    preset: str, size: tuple[int, int], ns: list[int], steps: int, warmup: int, device: str
) -> list[dict]:
    """Streaming frames/s of `preset` at `size` for each batch in `ns` on the default engine."""
    engine = "torch" if device.startswith("cuda") else "onnxruntime"
    results = []
    for n in ns:
        r = streaming_fps(preset, size, n, steps, warmup, device, [engine])
        ((used, fig),) = r.items()
        results.append(
            {"preset": preset, "size": list(size), "n": n, "engine": used, "bf16": device.startswith("cuda"), **fig}
        )
        print(
            f"  {preset} {size[0]}x{size[1]} n={n}: {fig['frames_per_s']:.1f} frames/s "
            f"({fig['ms_per_step']:.2f} ms/step, {used})",
            flush=True,
        )
    return results


def engine_parity(device: str, frames: int) -> dict:
    """The bundled weights on one embedded drive: the default engine on `device` against float32 PyTorch on the CPU.

    bf16 on CUDA rounds every activation; this says how far the labels, depth and ego-motion the env
    observes move because of it, on real frames with the recurrent state carried through the drive.
    """
    from carla_gym.env.perception_source import bundled_weights
    from carla_gym.sim import make_backend
    from perception.metrics.segmentation import confusion_matrix, miou_and_accuracy

    backend = make_backend("embedded", size=(128, 256), seed=0)
    try:
        backend.reset(seed=0)
        drive = [backend.step(backend.autopilot_control()) for _ in range(frames)]
    finally:
        backend.close()
    runs = {
        "reference": TemporalPerception.from_weights(bundled_weights(), device="cpu", engine="torch", autocast=False),
        "default": TemporalPerception.from_weights(bundled_weights(), device=device),
    }
    outs: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, perception in runs.items():
        got = outs[name] = {"labels": [], "depth": [], "pose6": []}
        for f in drive:
            out = perception.step(f.rgb[None])
            got["labels"].append(out.labels[0].cpu().numpy())
            got["depth"].append(out.depth[0, 0].float().cpu().numpy())
            got["pose6"].append(out.pose6[0].float().cpu().numpy())
    ref, new = ({k: np.stack(v) for k, v in outs[n].items()} for n in ("reference", "default"))
    truth = np.stack([f.semantic for f in drive])
    n_classes = len(runs["reference"].class_names)
    rel = np.abs(new["depth"] - ref["depth"]) / np.maximum(ref["depth"], 1e-3)
    pose = np.abs(new["pose6"] - ref["pose6"])
    return {
        "frames": frames,
        "engine": runs["default"].engine,
        "device": str(runs["default"].device),
        "autocast_dtype": str(runs["default"].autocast_dtype) if runs["default"].autocast else None,
        "label_agreement": float((new["labels"] == ref["labels"]).mean()),
        "depth_rel_error_median": float(np.median(rel)),
        "depth_rel_error_p99": float(np.quantile(rel, 0.99)),
        "pose_max_abs_m": float(pose[:, :3].max()),
        "pose_max_abs_rad": float(pose[:, 3:].max()),
        "miou_reference": float(miou_and_accuracy(confusion_matrix(ref["labels"], truth, n_classes))[0]),
        "miou_default": float(miou_and_accuracy(confusion_matrix(new["labels"], truth, n_classes))[0]),
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"), help="JSON results file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small n and few steps, `full` at 32x64: checks the suite on a CPU in about a minute",
    )
    parser.add_argument(
        "--ns", type=int, nargs="+", default=None, help="numbers of worlds / streams (default 1 8 32 64)"
    )
    parser.add_argument(
        "--env-perception",
        nargs="+",
        default=["model"],
        choices=["model", "ground_truth"],
        help="perception modes of the env section (ground_truth: what the worlds and the vector env cost alone)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure (default 100; quick 25)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["egl", "env", "perception", "full", "parity"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ns = args.ns or ([1, 2] if args.quick else [1, 8, 32, 64])
    steps = args.steps or (25 if args.quick else 100)
    full_size = (32, 64) if args.quick else (256, 512)
    data: dict = {
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "ns": ns,
        "steps": steps,
        "errors": {},
    }
    print(f"GPU suite on {data['device']}; torch {torch.__version__}; writing {args.out}", flush=True)
    sections = {
        "egl": check_egl,
        "env": lambda: env_rates(ns, steps, args.env_perception),
        "perception": lambda: perception_rates("lite", (128, 256), ns, steps, 5, device),
        "full": lambda: perception_rates(
            "full", full_size, [1] if args.quick else [1, 8], 2 if args.quick else 20, 1 if args.quick else 3, device
        ),
        "parity": lambda: engine_parity(device, 20 if args.quick else 200),
    }
    for name, run in sections.items():
        if name in args.skip:
            continue
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            data[name] = run()
            if name == "egl":
                print(
                    f"  NVIDIA EGL: {data[name]['nvidia']}"
                    + ("" if data[name]["nvidia"] else f" ({data[name].get('why_not')})"),
                    flush=True,
                )
        except Exception as e:  # noqa: BLE001 - record and go on: one call brings back every section it can
            data["errors"][name] = traceback.format_exc()
            print(f"  failed: {type(e).__name__}: {e}", flush=True)
        data.setdefault("section_s", {})[name] = time.perf_counter() - t0
        write_json(args.out, data)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
