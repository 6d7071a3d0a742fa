"""Learning curves from TensorBoard logs: route completion (or another logged scalar) against env steps.

    python -m agents.learning_curves runs/ppo_gt runs/ppo_lite --labels "ground truth" "lite" --out curves.png

Each RUN is a training output folder (or its `tb` folder): every TensorBoard event file under it is
read, so a run resumed into the same folder gives one curve. A RUN can also be one curve of a JSON that
`--json` wrote, `FILE.json#LABEL`, so a figure can be drawn again after the run's logs are gone. `agents.train_ppo` logs
`driving/route_completion` (the mean over the episodes that ended in each rollout) at its env step
count; without `--tag` the first of `DEFAULT_TAGS` that a run logged is plotted. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from carla_gym.cli import HelpFormatter

# What to plot when no tag is named, best first: route completion of training episodes, then the return.
DEFAULT_TAGS = ("driving/route_completion", "rollout/ep_rew_mean")


# Saved with `--json` beside the plotted curve: how episodes went, per rollout.
SAVED_PREFIXES = ("driving/", "rollout/")


def _saved(run: str | Path) -> dict[str, Any] | None:
    """The curve that `run` names in a JSON written by `--json` (`FILE.json#LABEL`), or None for a log folder."""
    file, _, label = str(run).partition("#")
    if not file.endswith(".json"):
        return None
    path = Path(file)
    try:
        curves = json.loads(path.read_text())["curves"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file of saved curves") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a JSON of curves written by --json") from None
    labels = [curve.get("label") for curve in curves]
    if label not in labels:
        raise ValueError(f"{path}: no curve labelled {label!r}; name one as {file}#LABEL, LABEL one of {labels}")
    return curves[labels.index(label)]


def _origin(run: str | Path) -> str:
    """The folder a curve was logged in, also when it is drawn again from a saved JSON."""
    saved = _saved(run)
    return str(run) if saved is None else str(saved.get("run", run))


def _label(run: str | Path) -> str:
    """A run's legend label when none is given: a saved curve's own label, else the run's path."""
    saved = _saved(run)
    return str(run) if saved is None else str(saved["label"])


def _logs(run: Path) -> list[EventAccumulator]:
    folders = sorted({f.parent for f in run.rglob("events.out.tfevents.*")}) if run.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{run}: no TensorBoard event files (events.out.tfevents.*) under it")
    return [EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload() for folder in folders]


def _points(logs: list[EventAccumulator], tag: str) -> tuple[list[int], list[float]]:
    points: dict[int, float] = {}
    for log in logs:
        if tag in log.Tags()["scalars"]:
            for event in sorted(log.Scalars(tag), key=lambda e: e.wall_time):
                points[event.step] = event.value
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def read_scalars(run: str | Path, tags: Sequence[str] = DEFAULT_TAGS) -> tuple[str, list[int], list[float]]:
    """The first of `tags` logged under `run`, as (tag, steps, values) sorted by step.

    Reads every event file under `run` (or the saved curve `FILE.json#LABEL`); a step logged twice (a resumed run)
    keeps its last value. Raises FileNotFoundError when `run` holds no event file, ValueError naming the tags it
    does hold when none of `tags` is among them."""
    saved = _saved(run)
    logs = [] if saved is not None else _logs(Path(run))
    scalars = saved["scalars"] if saved is not None else {}
    logged = sorted(scalars) if saved is not None else sorted({tag for log in logs for tag in log.Tags()["scalars"]})
    tag = next((t for t in tags if t in logged), None)
    if tag is None:
        raise ValueError(f"{run}: logs none of {', '.join(tags)}; it logs {', '.join(logged) or 'no scalars'}")
    if saved is not None:
        return tag, list(scalars[tag]["steps"]), list(scalars[tag]["values"])
    return (tag, *_points(logs, tag))


def read_all(run: str | Path, prefixes: Sequence[str] = SAVED_PREFIXES) -> dict[str, dict[str, list]]:
    """Every scalar logged under `run` whose tag starts with one of `prefixes`: {tag: {"steps", "values"}}."""
    saved = _saved(run)
    if saved is not None:
        return {tag: points for tag, points in saved["scalars"].items() if tag.startswith(tuple(prefixes))}
    logs = _logs(Path(run))
    tags = sorted({t for log in logs for t in log.Tags()["scalars"] if t.startswith(tuple(prefixes))})
    return {tag: dict(zip(("steps", "values"), _points(logs, tag), strict=True)) for tag in tags}


def up_to(points: dict[str, list], timesteps: int | None) -> dict[str, list]:
    """`points` ({"steps", "values"}) cut to the steps <= `timesteps` (None: all of them)."""
    if timesteps is None:
        return points
    keep = [i for i, step in enumerate(points["steps"]) if step <= timesteps]
    return {key: [points[key][i] for i in keep] for key in ("steps", "values")}


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean of the last `window` values at each point (1: the values unchanged)."""
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    return [sum(values[max(0, i + 1 - window) : i + 1]) / min(window, i + 1) for i in range(len(values))]


def _per_run(window: int | Sequence[int], runs: int) -> list[int]:
    """One smoothing window per run, from one window for all of them or one each."""
    windows = [window] if isinstance(window, int) else list(window)
    if len(windows) == 1:
        return windows * runs
    if len(windows) != runs:
        raise ValueError(f"{len(windows)} smoothing windows for {runs} runs: give one, or one per run")
    return windows


def plot_curves(
    runs: Sequence[str | Path],
    out: str | Path,
    labels: Sequence[str] | None = None,
    tags: Sequence[str] = DEFAULT_TAGS,
    title: str | None = None,
    window: int | Sequence[int] = 1,
    json_out: str | Path | None = None,
    timesteps: int | None = None,
) -> Path:
    """Plot each run's curve (see `read_scalars`, smoothed over `window` points: one window for every run, or one per
    run, so that a run logged every few thousand steps and one logged once a round can share a figure) against env
    steps into the PNG `out`; returns its path. `json_out` also writes the raw points and every `SAVED_PREFIXES`
    scalar of each run, so the figure and the episode statistics behind it outlive the runs' logs. `timesteps` keeps only the points up
    to that many env steps (curves and JSON), to compare runs of different lengths on the same budget.

    Every run is read before anything is written, so a bad run leaves an earlier `out` untouched."""
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs: give one label per run")
    if timesteps is not None and timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {timesteps}")
    windows = _per_run(window, len(runs))
    raw = []
    for run in runs:
        tag, steps, values = read_scalars(run, tags)
        cut = up_to({"steps": steps, "values": values}, timesteps)
        raw.append((tag, cut["steps"], cut["values"]))
    curves = [(tag, steps, smooth(values, w)) for (tag, steps, values), w in zip(raw, windows, strict=True)]
    names = list(labels or [_label(r) for r in runs])
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting learning curves needs matplotlib: pip install matplotlib") from None
    # The legend goes under the axes, a line per run, so that it never hides a curve.
    figure, axes = plt.subplots(figsize=(6.4, 4.0 + 0.2 * len(runs)), dpi=100)
    for (_, steps, values), label, w in zip(curves, names, windows, strict=True):
        axes.plot(steps, values, label=label + (f" (mean of {w} points)" if w > 1 else ""))
    used = sorted({tag for tag, _, _ in curves})
    axes.set_xlabel("env steps")
    axes.set_ylabel(" / ".join(used))
    if "driving/route_completion" in used and len(used) == 1:
        axes.set_ylim(0.0, 1.0)
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize="small", frameon=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    if json_out is not None:
        rows = [
            {
                "label": label,
                "run": _origin(run),
                "tag": tag,
                "smoothing_window": w,
                "steps": steps,
                "values": values,
                "scalars": {tag: up_to(points, timesteps) for tag, points in read_all(run).items()},
            }
            for run, label, (tag, steps, values), w in zip(runs, names, raw, windows, strict=True)
        ]
        Path(json_out).write_text(json.dumps({"curves": rows}, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.learning_curves", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", help="training output folders holding TensorBoard logs, or FILE.json#LABEL saved by --json"
    )
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: the paths)")
    parser.add_argument(
        "--tag", nargs="+", default=list(DEFAULT_TAGS), help="scalar(s) to plot, the first logged one per run"
    )
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"), help="PNG to write")
    parser.add_argument(
        "--smooth",
        type=int,
        nargs="+",
        default=[1],
        help="plot the trailing mean of N points (1: raw): one N for every run, or one per run",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the raw points (and driving/*, rollout/* scalars) here"
    )
    parser.add_argument(
        "--timesteps", type=int, default=None, help="only the points up to this many env steps (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        out = plot_curves(
            args.runs, args.out, args.labels, args.tag, args.title, args.smooth, args.json, args.timesteps
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
