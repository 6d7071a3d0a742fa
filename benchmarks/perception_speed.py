"""Perception speed: parameters, FLOPs and streaming frames/s of each preset.

Streams uint8 camera frames through `TemporalPerception.step` (all three tasks, recurrent state,
pre- and post-processing included; frames already at the model size) and prints median timings.
Each timed step also reads the full-size `labels` (probabilities upsampled to the input size and
their argmax), which `PerceptionOutput` otherwise makes only on demand; `--lazy` leaves them out,
as the env does, which pools the head's probabilities straight to the observation size.
On the CPU it measures both engines side by side, eager PyTorch and ONNX Runtime (the default), in
alternating rounds within one run, and prints their ratio. The ONNX export is made (or loaded from
the cache) before timing starts.

    python benchmarks/perception_speed.py                       # lite at 128x256, batch 1 and 8
    python benchmarks/perception_speed.py --presets lite full --sizes 128x256 256x512
    python benchmarks/perception_speed.py --presets full --device cuda   # bf16 autocast on CUDA
    python benchmarks/perception_speed.py --engines onnxruntime         # one engine only
    python benchmarks/perception_speed.py --batches 1 --arch seg_skip_names=s8,s4 seg_decoder_widths=64,48,32

`full` is very slow on CPU (about 1.2 TFLOPs per 256x512 frame, 0.93 of them in the 2048-channel
ConvGRU), so it only runs when asked for.
"""

from __future__ import annotations

import argparse
import json

import torch
from perception_timing import ARCH_KEY, device_name, streaming_fps
from torch.utils.flop_counter import FlopCounterMode

from perception.models import (
    PresetConfig,
    build_depth_model,
    build_model,
    build_segmentation_model,
    count_parameters,
    get_preset,
)
from perception.training.config import network_config


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def parameter_counts(preset: str | PresetConfig) -> dict[str, float]:
    """Millions of parameters per model, counted on the meta device."""
    pipe = build_model(preset, device="meta")
    return {
        "segmentation_model": count_parameters(build_segmentation_model(preset, device="meta")) / 1e6,
        "depth_model": count_parameters(build_depth_model(preset, device="meta")) / 1e6,
        "geometry_filter": count_parameters(pipe.geometry_filter) / 1e6,
        "ego_motion_filter": count_parameters(pipe.ego_motion_filter) / 1e6,
        "pipeline": count_parameters(pipe) / 1e6,
    }


def step_gflops(preset: str | PresetConfig, size: tuple[int, int]) -> float:
    """GFLOPs (2 x multiply-adds, conv/matmul only) of one streaming step with state, batch 1.

    Counted on the meta device: shapes only, so even `full` costs nothing to count.
    """
    model = build_model(preset, device="meta").eval()
    x = torch.empty(1, 3, *size, device="meta")
    with torch.inference_mode():
        state = model.step(x)["state"]
        with FlopCounterMode(display=False) as counter:
            model.step(x, state)
    return counter.get_total_flops() / 1e9


def print_ratios(
    label: str, where: str, timed: dict[str, dict[str, float]], suffixes: list[str], engines: list[str]
) -> None:
    """Frames/s of ONNX Runtime over eager PyTorch for each network, and of the changed network (`--arch`) over the
    preset as is for each engine, where both were timed."""

    def ratio(over: str, under: str) -> float | None:
        both = {over, under} <= timed.keys()
        return timed[over]["frames_per_s"] / timed[under]["frames_per_s"] if both else None

    for suffix in suffixes:
        r = ratio("onnxruntime" + suffix, "torch" + suffix)
        if r is not None:
            print(f"{label}{suffix}] {where} onnxruntime / torch: {r:.2f}x")
    for engine in engines:
        r = ratio(f"{engine} {ARCH_KEY}", engine)
        if r is not None:
            print(f"{label}] {where} {engine}: with {ARCH_KEY} / as is: {r:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["lite"], help="presets to measure (full only if asked)")
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=None, help="input sizes HxW (default: each preset's own size)"
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="numbers of streams")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per measurement (default 50; 3 for full on CPU)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; 1 for full on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=["torch", "onnxruntime"],
        default=None,
        help="engines to compare (default: torch and onnxruntime on the CPU, torch on CUDA)",
    )
    parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    parser.add_argument("--lazy", action="store_true", help="do not read the full-size labels after each step")
    parser.add_argument(
        "--arch",
        nargs="+",
        metavar="FIELD=VALUE",
        help="also time each preset with these architecture changes (as `train_perception --arch`), side by side",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    engines = args.engines or (["torch"] if args.device.startswith("cuda") else ["torch", "onnxruntime"])
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; engines: {', '.join(engines)}")
    results = []
    for preset in args.presets:
        networks = {"": get_preset(preset)} | ({f" {ARCH_KEY}": network_config(preset, args.arch)} if args.arch else {})
        params = {suffix: parameter_counts(network) for suffix, network in networks.items()}
        for suffix, counts in params.items():
            print(f"\n[{preset}{suffix}] parameters (M): " + ", ".join(f"{k} {v:.2f}" for k, v in counts.items()))
        for size in args.sizes or [get_preset(preset).input_size]:
            flops = {suffix: None if args.no_flops else step_gflops(n, size) for suffix, n in networks.items()}
            for suffix, gflops in flops.items():
                if gflops is not None:
                    print(
                        f"[{preset}{suffix}] {size[0]}x{size[1]}: {gflops:.2f} GFLOPs per frame ({gflops / 2:.2f} GMACs)"
                    )
            slow = preset == "full" and not args.device.startswith("cuda")
            steps = args.steps or (3 if slow else 50)
            warmup = args.warmup if args.warmup is not None else (1 if slow else 5)
            for streams in args.batches:
                timed = streaming_fps(
                    preset, size, streams, steps, warmup, args.device, engines, not args.lazy, args.arch or ()
                )
                where = f"{size[0]}x{size[1]} streams={streams}"
                for key, r in timed.items():
                    engine, _, changed = key.partition(" ")
                    suffix = f" {changed}" if changed else ""
                    print(
                        f"[{preset}{suffix}] {where} {engine:<11}: median "
                        f"{r['ms_per_step']:.2f} ms/step (p90 {r['p90_ms']:.2f}), {r['frames_per_s']:.1f} frames/s"
                    )
                    results.append(
                        {
                            "preset": preset,
                            "arch": list(args.arch or []) if changed else [],
                            "size": list(size),
                            "streams": streams,
                            "engine": engine,
                            "full_size_labels": not args.lazy,
                            "gflops": flops[suffix],
                            "params_m": params[suffix],
                            **r,
                        }
                    )
                print_ratios(f"[{preset}", where, timed, list(networks), engines)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(args.device), "torch": torch.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
