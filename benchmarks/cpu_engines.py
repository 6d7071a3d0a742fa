"""Other CPU engines for the lite streaming step: speed and accuracy against ONNX Runtime float32 (the default).

Quantizes the cached float32 export of the streaming step (`perception.onnx_engine`) with ONNX
Runtime's static quantization (convolutions only, per-channel int8 weights, uint8 activations), both
as QOperator (QLinearConv) and as QDQ graphs, calibrated on the training-split clips of `--data`
streamed through the float32 step, so the recurrent state inputs see their real range; with
`openvino` installed, also compiles the float32 graph for OpenVINO's CPU plugin. Then streams
the validation clips of `--data` through each taking turns in rounds of 5 frames (the
labels read at full size, as `perception_speed.py` does) and prints the median step time, the ratio
to float32, mIoU (over the classes present), depth AbsRel and the share of pixels whose label agrees with float32.

    python -m carla_gym.collect --split train --clips 2 --camera-size 128 256 --out DIR
    python -m carla_gym.collect --split val --clips 6 --camera-size 128 256 --seed 11 --out DIR
    python benchmarks/cpu_engines.py --data DIR

Int8 kernels gain most on CPUs with VNNI (AVX-512 VNNI or AVX-VNNI); this measures the CPU it runs on.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from perception.data.clips import Clip, ClipStore
from perception.metrics.depth import DepthMetrics
from perception.metrics.segmentation import SegmentationMetrics
from perception.onnx_engine import RESULT_NAMES, STATE_NAMES, OnnxStep, cpu_session
from perception.provenance import command_line, cpu_description
from perception.streaming import PerceptionOutput, TemporalPerception
from perception.weights import weights_record

ROUND = 5  # frames per graph before the next one takes its turn


class OpenVinoSession:
    """The float32 graph compiled for OpenVINO's CPU plugin, called like an ONNX Runtime session."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        )
        self.request = compiled.create_infer_request()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = {out.get_any_name(): value for out, value in self.request.infer(feeds).items()}
        return [np.array(results[name]) for name in names]


class Stream:
    """One stream through the exported step on `session` (an ONNX Runtime session or one called like it)."""

    def __init__(self, step: OnnxStep, session) -> None:
        self.step = copy.copy(step)  # `OnnxStep.run` on another session of the same graph
        self.step.session = session
        self.reset()

    def reset(self) -> None:
        self.state, self.first = self.step.zero_state(1), np.ones(1, dtype=bool)

    def __call__(self, rgb: np.ndarray) -> tuple[PerceptionOutput, dict[str, np.ndarray]]:
        """(H, W, 3) uint8 -> the step's output and the session's feeds (for calibration)."""
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        feeds = {"image": image, "first": self.first, **self.state}
        out = self.step.run(image, self.state, self.first)
        self.state = {name: out[f"{name}_out"] for name in STATE_NAMES}
        self.first = np.zeros(1, dtype=bool)
        return PerceptionOutput(**{name: torch.from_numpy(out[name]) for name in RESULT_NAMES}), feeds


def calibration_feeds(stream: Stream, clips: list[Clip], every: int) -> Iterator[dict[str, np.ndarray]]:
    """Every `every`-th frame's feeds of the float32 step streaming through each clip."""
    for clip in clips:
        stream.reset()
        for i in range(len(clip)):
            _, feeds = stream(clip.frame(i)["rgb"])
            if i % every == 0:
                yield {k: v.copy() for k, v in feeds.items()}


def quantize(source: Path, calibration: list[dict[str, np.ndarray]], folder: Path) -> dict[str, Path]:
    """The float32 export quantized as QOperator and as QDQ graphs (convolutions only, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    paths = {}
    for name, fmt in (("int8 QOperator", QuantFormat.QOperator), ("int8 QDQ", QuantFormat.QDQ)):
        paths[name] = folder / f"{name.split()[1].lower()}.onnx"
        quantize_static(
            str(prepared),
            str(paths[name]),
            Reader(),
            quant_format=fmt,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    return paths


def compare(streams: dict[str, Stream], clips: list[Clip], num_classes: int) -> dict[str, dict[str, float]]:
    """Stream every clip through each graph in turns; timings, mIoU, AbsRel and agreement with the first graph."""
    names = list(streams)
    times: dict[str, list[float]] = {n: [] for n in names}
    segmentation = {n: SegmentationMetrics(num_classes) for n in names}
    depth = {n: DepthMetrics() for n in names}
    agree, pixels = dict.fromkeys(names, 0), 0
    for clip in clips:
        for s in streams.values():
            s.reset()
        frames = [clip.frame(i) for i in range(len(clip))]
        for start in range(0, len(frames), ROUND):
            labels: dict[str, list[np.ndarray]] = {}
            for n in names:
                labels[n] = []
                for frame in frames[start : start + ROUND]:
                    t0 = time.perf_counter()
                    out, _ = streams[n](frame["rgb"])
                    label = out.labels[0].numpy()
                    times[n].append(time.perf_counter() - t0)
                    labels[n].append(label)
                    segmentation[n].update(label, frame["semantic"])
                    depth[n].update(out.depth[0].numpy(), frame["depth"])
            for n in names:
                agree[n] += sum(int((a == b).sum()) for a, b in zip(labels[n], labels[names[0]], strict=True))
            pixels += sum(a.size for a in labels[names[0]])
    base = statistics.median(times[names[0]])
    return {
        n: {
            "ms_per_step": statistics.median(times[n]) * 1e3,
            "speedup": base / statistics.median(times[n]),
            "miou": segmentation[n].compute()["miou"],
            "abs_rel": float(depth[n].compute()["abs_rel"]),
            "label_agreement": agree[n] / pixels,
        }
        for n in names
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, help="weights folder (default: the bundled lite)")
    p.add_argument("--data", type=Path, required=True, help="clips recorded with carla_gym.collect (train and val)")
    p.add_argument("--calib-every", type=int, default=2, help="calibrate on every n-th training frame (default 2)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: torch's)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    import onnxruntime as ort

    store = ClipStore(args.data)
    train, val = store.clips(split="train"), store.clips(split="val")
    if not train or not val:
        raise SystemExit(f"error: {args.data} needs clips of the train split (calibration) and the val split (scoring)")
    perception = TemporalPerception.from_weights(args.weights, engine="onnxruntime", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        step = OnnxStep(
            perception.model, perception.input_size, perception.mean, perception.std, Path(tmp), args.threads
        )
        if step.path is None:
            raise SystemExit(f"error: could not write the float32 export to {tmp}")
        source = step.path
        float32 = Stream(step, step.session)
        calibration = list(calibration_feeds(float32, train, args.calib_every))
        paths = quantize(source, calibration, Path(tmp))
        streams = {
            "float32": float32,
            **{n: Stream(step, cpu_session(path, step.threads)) for n, path in paths.items()},
        }
        if importlib.util.find_spec("openvino") is not None:
            streams["OpenVINO float32"] = Stream(step, OpenVinoSession(source, step.threads))
        results = compare(streams, val, perception.num_classes)
    versions = {"onnxruntime": ort.__version__, "openvino": _version("openvino")}
    device = f"{cpu_description()}, {step.threads} threads, " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    print(f"{device}; {len(calibration)} calibration frames ({len(train)} train clips); {len(val)} val clips scored")
    print(f"{'graph':<17} {'ms/step':>8} {'speed-up':>9} {'mIoU':>7} {'AbsRel':>7} {'labels = float32':>17}")
    for name, r in results.items():
        print(
            f"{name:<17} {r['ms_per_step']:8.2f} {r['speedup']:8.2f}x {r['miou']:7.3f} {r['abs_rel']:7.3f} "
            f"{r['label_agreement']:16.2%}"
        )
    if args.json:
        command = command_line()
        args.json.write_text(
            json.dumps(
                {"command": command, **weights_record(args.weights), "device": device, "results": results}, indent=2
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
