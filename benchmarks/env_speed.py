"""Steps per second of `CarlaPerception-v0` (world + perception + task) and of `make_vec`.

    python benchmarks/env_speed.py [--steps 300] [--weights FOLDER] [--envs 1 2 4] [--ask-autopilot]

Measures one env and `carla_gym.make_vec` with 2 and 4 worlds, for `perception="model"` on both
CPU engines (`engine="torch"`, eager PyTorch, and `"onnxruntime"`, the default) and for
`"ground_truth"`, at a 128x256 camera, driving with the world's autopilot. The `lite` model has
untrained weights unless `--weights` (which does not change the speed). For each number of
worlds the configurations run side by side: they take turns in blocks of 25 steps, so a change
in the machine's load affects them alike. Each figure is the median over blocks after a warm-up
block; vector figures count env steps (n per call). The worlds' autopilots drive: their actions come with
each step's infos (`expert_action=True`, as DAgger reads its labels); `--ask-autopilot` adds runs (default
engine and ground truth) that ask every world each step instead, one more round trip. Targets (2 CPU cores): >= 120 steps/s for one
env with `lite` perception on the default engine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from env_timing import BLOCK, SingleEnv, VecEnv

from perception import build_model, save_weights
from perception.provenance import cpu_description

CONFIGS = (("model", "torch"), ("model", "onnxruntime"), ("ground_truth", "auto"))
ASKED = (("model", "onnxruntime"), ("ground_truth", "auto"))  # --ask-autopilot runs these again, asking


def side_by_side(n: int, weights: str, steps: int, ask: bool = False) -> dict[tuple[str, str], float]:
    """Median steps/s of every configuration in `CONFIGS` with `n` worlds, measured in turns; `ask` adds
    the default engine and ground truth with the autopilots asked each step (engine suffixed " asked") for n > 1."""
    runners: dict[tuple[str, str], SingleEnv | VecEnv] = {}
    try:
        for perception, engine in CONFIGS:
            runners[perception, engine] = (
                SingleEnv(perception, engine, weights) if n == 1 else VecEnv(n, perception, engine, weights)
            )
        if ask and n > 1:
            for perception, engine in ASKED:
                runners[perception, f"{engine} asked"] = VecEnv(n, perception, engine, weights, ask=True)
        rates: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for block in range(steps // BLOCK + 1):
            for key, runner in runners.items():
                rate = runner.block()
                if block:  # the first block is the warm-up
                    rates[key].append(rate)
        return {key: statistics.median(r) for key, r in rates.items()}
    finally:
        for runner in runners.values():
            runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per configuration")
    parser.add_argument("--weights", default=None, help="lite weights folder (default: untrained lite weights)")
    parser.add_argument("--envs", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument(
        "--ask-autopilot",
        action="store_true",
        help="also run make_vec (default engine, ground truth) asking every world for its autopilot's action each step "
        "(one more round trip), beside reading it from the step's infos",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)  # the same untrained weights in every run: their ONNX export is cached once
        weights = args.weights or str(save_weights(build_model("lite"), f"{tmp}/lite"))
        print(
            f"CarlaPerception-v0 speed, 128x256 camera; {cpu_description()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        )
        for n in args.envs:
            label = "1 env" if n == 1 else f"make_vec({n})"
            rates = side_by_side(n, weights, args.steps, args.ask_autopilot)
            for (perception, engine), rate in rates.items():
                asked = ", asked" if engine.endswith("asked") else ""
                name = (
                    f"{perception} ({engine.removesuffix(' asked')}){asked}"
                    if perception == "model"
                    else perception + asked
                )
                target = "  (target >= 120)" if n == 1 and engine == "onnxruntime" else ""
                print(f"  {name:<20} {label:<12} {rate:7.1f} steps/s{target}", flush=True)
            ratio = rates["model", "onnxruntime"] / rates["model", "torch"]
            print(f"  model onnxruntime / torch, {label}: {ratio:.2f}x", flush=True)
            for perception, engine in ASKED:
                if (perception, f"{engine} asked") in rates:
                    ratio = rates[perception, engine] / rates[perception, f"{engine} asked"]
                    print(f"  {perception}, actions in the infos / asked, {label}: {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
