"""Train the perception pipeline with the four-stage curriculum (SPEC 7) and evaluate it on the test town.

    python -m carla_gym.train_perception                          # lite preset, records its data first
    python -m carla_gym.train_perception --profile smoke --out /tmp/smoke
    python -m carla_gym.train_perception --data ~/clips --preset full --stages seq --epochs 0,0,0,5
    torchrun --nproc_per_node 2 -m carla_gym.train_perception --data ~/clips

Without --data, clips are recorded with `carla_gym.collect` (train, val and test towns of the
backend, plus --extra-towns random embedded towns as training data) into a cache folder named after
the backend, its world version, size, clip length, clip counts and seed, and reused next time.
Outputs in --out: weights/ (model.safetensors + config.json), report.json, pictures/, tb/
(TensorBoard), checkpoints/ (per epoch; --resume continues from the last one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from perception.data import ClipFormatError, ClipStore
from perception.training import (
    STAGE_NAMES,
    TrainConfig,
    TrainingError,
    default_config,
    train,
)
from perception.training.evaluation import evaluate, summary_table
from perception.training.pictures import write_pictures
from perception.weights import save_weights

from . import collect
from .sim import backend_class
from .sim.embedded.towns import training_seeds


def _per_stage(text: str, what: str, kind: type = int) -> list:
    """Four comma-separated non-negative numbers, one per stage (seg,depth,ego,seq)."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be {len(STAGE_NAMES)} comma-separated numbers, got {text!r}") from None
    if len(values) != len(STAGE_NAMES) or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{what} must be {len(STAGE_NAMES)} non-negative numbers (seg,depth,ego,seq), got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m carla_gym.train_perception", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", type=Path, help="folder of recorded clips (SPEC 5); recorded when absent")
    p.add_argument("--backend", default="embedded", help="backend to record from when --data is absent")
    p.add_argument("--host", default=None, help="CARLA server host when recording with --backend carla")
    p.add_argument("--port", type=int, default=None, help="CARLA server port when recording with --backend carla")
    p.add_argument("--clips", type=int, help="clips per town to record (default: the preset's)")
    p.add_argument("--extra-towns", type=int, help="random embedded towns recorded as extra training data "
                   "(default: the preset's; 0: the named train towns only)")
    p.add_argument("--frames", type=int, help="frames per recorded clip (default: the preset's)")
    p.add_argument("--size", type=collect.parse_size, help="recording size HxW (default: the preset's input size)")
    p.add_argument("--preset", choices=("lite", "full"), default="lite")
    p.add_argument("--stages", default=",".join(STAGE_NAMES), help="comma-separated stages (default: all, in order)")
    p.add_argument("--epochs", type=lambda t: _per_stage(t, "--epochs"), help="epochs per stage, e.g. 30,20,15,15")
    p.add_argument("--batch-size", type=lambda t: _per_stage(t, "--batch-size"), help="batch size per stage, e.g. 8,8,4,2")
    p.add_argument("--lr", type=lambda t: _per_stage(t, "--lr", float), help="Adam learning rate per stage, e.g. 3e-4,3e-4,3e-4,3e-5")
    p.add_argument("--clutter", type=lambda t: _per_stage(t, "--clutter", float), metavar="P,P,P,P",
                   help="probability per stage that a training window gets occluding clutter (default 0.25 each)")
    p.add_argument("--window", type=int, help="frames per training window of the ego and seq stages (default 6)")
    p.add_argument("--bptt", type=int, metavar="N", help="seq stage: truncated back-propagation through each window "
                   "in chunks of N frames, the state carried between them (default: the whole window)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror training frames left to right at random in the seg and depth stages (default: on)")
    p.add_argument("--zoom", type=float, default=None, metavar="MAX",
                   help="zoom half the training frames of the seg stage in by up to MAX (default 1.5; 1: off)")
    p.add_argument("--profile", choices=("default", "smoke"), default="default",
                   help="smoke: every stage for seconds on tiny data (tests, CI)")
    p.add_argument("--out", type=Path, default=Path("runs/perception"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-eval", action="store_true", help="skip the test-town evaluation and pictures")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    return p


def make_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The preset's (or smoke profile's) defaults with the command line's overrides."""
    cfg = default_config(args.preset, args.profile)
    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGE_NAMES]
    if unknown or not names:
        parser.exit(2, f"error: unknown stage {unknown[0] if unknown else args.stages!r}; known: {', '.join(STAGE_NAMES)}\n")
    if args.clutter and max(args.clutter) > 1.0:
        parser.exit(2, f"error: --clutter {','.join(map(str, args.clutter))}: probabilities must be at most 1\n")
    for i, stage in enumerate(cfg.stages):
        if args.epochs:
            stage.epochs = args.epochs[i]
        if args.batch_size:
            stage.batch_size = max(1, args.batch_size[i])
        if args.lr:
            stage.lr = args.lr[i]
        if args.clutter:
            stage.clutter_p = args.clutter[i]
        if args.window is not None and stage.window > 1:
            if args.window < 2:
                parser.exit(2, f"error: --window {args.window}: a window needs at least 2 frames\n")
            stage.window = args.window
    if args.bptt is not None:
        if args.bptt < 2:
            parser.exit(2, f"error: --bptt {args.bptt}: a chunk needs at least 2 frames\n")
        cfg.stage("seq").bptt = args.bptt
    cfg.stages = [s for s in cfg.stages if s.name in names]
    cfg.seed, cfg.workers = args.seed, args.workers
    if args.mirror is not None:
        cfg.mirror = args.mirror
    if args.zoom is not None:
        if args.zoom < 1.0:
            parser.exit(2, f"error: --zoom {args.zoom}: the largest zoom must be at least 1 (1: off)\n")
        cfg.zoom = args.zoom
    if args.clips is not None:
        cfg.clips = args.clips
    if args.extra_towns is not None:
        cfg.extra_towns = max(0, args.extra_towns)
    if args.frames is not None:
        cfg.frames = args.frames
    if args.size is not None:
        cfg.size = args.size
    window = max(s.window for s in cfg.stages)
    if cfg.frames < window:
        parser.exit(2, f"error: --frames {cfg.frames} is shorter than the {window}-frame training window\n")
    return cfg


def record(cfg: TrainConfig, backend: str, server: list[str] | None = None) -> Path:
    """Record (or reuse) train, val and test clips with `carla_gym.collect`; returns the clip root.

    `server` holds collect's `--host/--port` arguments for the CARLA backend."""
    h, w = cfg.size
    version = backend_class(backend).WORLD_VERSION
    extra = cfg.extra_towns if backend == "embedded" else 0
    # Training reads every clip under the root, so the name holds everything that decides which clips it has.
    recipe = f"{cfg.clips}clips" + (f"-{extra}x{cfg.extra_town_clips}extra" if extra else "")
    root = collect.default_root() / f"{backend}-v{version}-{h}x{w}-{cfg.frames}f-{recipe}-seed{cfg.seed}"
    common = ["--backend", backend, "--frames", str(cfg.frames), "--size", f"{h}x{w}", "--out", str(root),
              "--seed", str(cfg.seed), *(server or [])]
    for split in ("train", "val", "test"):
        collect.main([*common, "--split", split, "--clips", str(cfg.clips)])
    if extra:
        seeds = ",".join(str(s) for s in training_seeds(extra))
        collect.main([*common, "--towns", seeds, "--split", "train", "--clips", str(cfg.extra_town_clips)])
    return root


def data_description(store: ClipStore, root: Path, backend: str | None) -> dict[str, Any]:
    """What the weights were trained on, for config.json."""
    splits = {s: sorted({c.meta.town for c in store.clips(split=s)}) for s in ("train", "val", "test")}
    return {"root": str(root), "backend": backend or store.clips()[0].meta.backend, "towns": splits,
            "clips": {s: len(store.clips(split=s)) for s in splits},
            "frames": sum(len(c) for c in store.clips(split="train"))}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = make_config(args, parser)
    rank = int(os.environ.get("RANK", "0"))
    t0 = time.time()
    if args.data is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            parser.exit(2, "error: pass --data under torchrun (record the clips first, e.g. with a single-process run)\n")
        try:
            server = [*(["--host", args.host] if args.host else []), *(["--port", str(args.port)] if args.port else [])]
            data = record(cfg, args.backend, server)
        except SystemExit as e:  # collect's one-line errors
            parser.exit(2, f"{e}\n")
    else:
        data = args.data.expanduser()
        if not data.is_dir():
            parser.exit(2, f"error: data folder {data} does not exist\n")
    try:
        store = ClipStore(data)
        if not len(store):
            raise ClipFormatError(f"{data}: no recorded clips")
        model = train(cfg, data, args.out, device=args.device, resume=args.resume,
                      stop_after_epochs=args.stop_after_epochs, log=tqdm.write if rank == 0 else (lambda _: None))
    except (ClipFormatError, TrainingError, ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    if rank != 0:
        return 0
    train_s = time.time() - t0
    description = data_description(store, data, args.backend if args.data is None else None)
    extra = {"train_config": cfg.to_dict(), "train_seconds": round(train_s, 1),
             "command": "python -m carla_gym.train_perception " + " ".join(argv if argv is not None else sys.argv[1:])}
    meta = store.clips()[0].meta
    size = (meta.height, meta.width)
    weights_dir = save_weights(model, args.out / "weights", training_data=description, extra=extra, input_size=size)
    print(f"weights written to {weights_dir} ({train_s:.0f}s)")
    if args.stop_after_epochs is not None or args.no_eval:
        return 0
    test = store.clips(split="test")
    if not test:
        print(f"no test clips in {data}: skipping the evaluation")
        return 0
    device = next(model.parameters()).device
    report = write_report(model, test, args.out, device, seed=cfg.seed,
                          corruptions=None if cfg.eval_corruptions else ())
    save_weights(model, args.out / "weights", training_data=description, extra=extra, input_size=size,
                 metrics={"test": report["results"]["clean"]})
    print(f"report: {args.out / 'report.json'} (total {time.time() - t0:.0f}s)")
    return 0


def write_report(model: torch.nn.Module, clips: list, out: Path, device: torch.device, seed: int = 0,
                 corruptions: tuple[str, ...] | None = None, weights_config: dict | None = None) -> dict[str, Any]:
    """Evaluate on `clips`, write out/report.json and out/pictures/ (from the first clip); returns the report."""
    from perception.data import CORRUPTIONS

    def pictures(i: int, item: dict, preds: dict) -> None:
        if i == 0:
            write_pictures(item, preds, out / "pictures")

    evaluation = evaluate(model, clips, device=device, corruptions=CORRUPTIONS if corruptions is None else corruptions,
                          seed=seed, on_clip=pictures)
    config = weights_config or {"preset": model.config.name, "architecture": model.config.to_dict(),
                                "num_classes": model.num_classes}
    report = {"weights_config": config, "clips": [str(c.path) for c in clips], "modes": {
        "per_frame": "the same weights with the recurrent state reset every frame (baseline)",
        "temporal": "recurrent state carried through each clip"}, **evaluation}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / "report.json")
    print(summary_table(evaluation["results"], evaluation["temporal_vs_per_frame"]))
    return report


if __name__ == "__main__":
    sys.exit(main())
