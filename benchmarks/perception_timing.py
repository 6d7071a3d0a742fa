"""Streaming frames/s of `TemporalPerception`, engines side by side, and the device they ran on.

Shared by `perception_speed.py` and `gpu_suite.py`; not a script of its own.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from perception.models import build_model, get_preset
from perception.provenance import cpu_description
from perception.streaming import TemporalPerception
from perception.training.config import network_config

ROUND = 5  # steps per engine before switching to the next one
ARCH_KEY = "--arch"  # marks the results of the network with the architecture changes


def streaming_fps(
    preset: str,
    size: tuple[int, int],
    streams: int,
    steps: int,
    warmup: int,
    device: str,
    engines: list[str],
    full_maps: bool = True,
    arch: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """Median step time and frames/s of `TemporalPerception` over `streams` streams, per engine; with `arch`
    (`FIELD=VALUE` changes of the preset, `perception.models.parse_overrides`) also per engine of the changed
    network, keyed `"{engine} {ARCH_KEY}"`.

    Every network and engine takes its turn in rounds of `ROUND` steps on the same frames, so a change in the
    machine's load affects them alike.
    """
    networks = {"": get_preset(preset)} | ({f" {ARCH_KEY}": network_config(preset, arch)} if arch else {})
    contestants: list[tuple[str, TemporalPerception]] = []
    for suffix, network in networks.items():
        torch.manual_seed(0)  # the same weights in every run: the ONNX export is cached once
        model = build_model(network, device=device)
        contestants += [(suffix, TemporalPerception(model, device=device, input_size=size, engine=e)) for e in engines]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (streams, *size, 3), dtype=np.uint8) for _ in range(4)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _, perception in contestants:
        for i in range(max(warmup, 1)):  # the first step exports or loads the ONNX graph
            perception.step(frames[i % len(frames)])
    # keyed by the engine each one runs on after its first step (a failed export falls back to torch)
    times: dict[str, list[float]] = {perception.engine + suffix: [] for suffix, perception in contestants}
    for r in range(-(-steps // ROUND)):
        for suffix, perception in contestants:
            for i in range(min(ROUND, steps - r * ROUND)):
                t0 = time.perf_counter()
                out = perception.step(frames[i % len(frames)])
                if full_maps:
                    out.labels  # noqa: B018 - made on first access: full-size probabilities and argmax
                sync()
                times[perception.engine + suffix].append(time.perf_counter() - t0)
    results = {}
    for key, ts in times.items():
        median = statistics.median(ts)
        p90 = sorted(ts)[int(0.9 * (len(ts) - 1))]
        results[key] = {"ms_per_step": median * 1e3, "p90_ms": p90 * 1e3, "frames_per_s": streams / median}
    return results


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_description()}, {torch.get_num_threads()} threads"
