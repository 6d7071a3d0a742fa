"""MkDocs hook: render figures and tables from the result files at build time.

A page writes ``{{ name(args) }}`` where a figure belongs, e.g.
``{{ fig("lite_report.json", "results.clean.temporal.miou") }}`` or ``{{ perception_report() }}``.
The values come from ``docs/results/**.json`` and the bundled weights' ``config.json``, so each
figure is stored in one place and the pages cannot drift from it. A missing file, key or macro
fails the build with a message naming it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
SOURCES = {"weights": ROOT / "carla_gym" / "weights" / "lite" / "config.json"}
MACRO = re.compile(r"\{\{\s*(\w+)\((.*?)\)\s*\}\}")

CONDITIONS = {"clean": "clean", "noise": "noise", "lighting_drift": "lighting drift", "clutter": "clutter"}
MODES = {"per_frame": "per-frame", "temporal": "temporal"}


@cache
def load(source: str) -> dict[str, Any]:
    """A result file: ``"weights"`` (the bundled weights' config.json) or a path under docs/results."""
    path = SOURCES.get(source, RESULTS / source)
    if not path.is_file():
        raise PluginError(f"docs hook: result file {path} not found")
    with path.open() as f:
        return json.load(f)


def lookup(source: str, key: str) -> Any:
    """The value at dotted ``key`` in ``source`` (a number indexes a list); a missing key names the file and the key."""
    value: Any = load(source)
    for part in key.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise PluginError(f"docs hook: {source} has no key {key!r} (missing {part!r})")
    return value


def fmt(value: Any, spec: str = ".3f") -> str:
    """Format a figure: a format spec, ``"pct"`` (a fraction as a percentage), ``"signed"`` or ``"ci"``."""
    if spec == "pct":
        return f"{100 * value:.1f}%"
    if spec == "signed":
        return f"{value:+.3f}"
    if spec == "ci":
        low, high = value
        return f"[{low:+.3f}, {high:+.3f}]"
    return format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fig(source: str, key: str, spec: str = ".3f") -> str:
    """One figure from a result file."""
    return fmt(lookup(source, key), spec)


def perception_report(source: str = "lite_report.json") -> str:
    """Per-frame and temporal model on the test clips, clean and under each corruption."""
    results = lookup(source, "results")
    ceiling = results["clean"]["temporal"]["temporal"]["tc_ceiling"]
    rows = []
    for cond, cond_name in CONDITIONS.items():
        for mode, mode_name in MODES.items():
            r = results[cond][mode]
            rows.append(
                [
                    cond_name,
                    mode_name,
                    fmt(r["miou"]),
                    fmt(r["pixel_accuracy"]),
                    fmt(r["depth"]["abs_rel"]),
                    fmt(r["temporal"]["tc"]),
                    fmt(r["temporal"]["flicker"], ".4f"),
                    fmt(r["ego_motion"]["translation_error_m"]),
                    fmt(r["ego_motion"]["rotation_error_deg"]),
                ]
            )
    header = [
        "condition",
        "model",
        "mIoU",
        "pixel acc.",
        "depth AbsRel",
        f"TC (ceiling {ceiling:.3f})",
        "flicker",
        "transl. err (m)",
        "rot. err (deg)",
    ]
    return table(header, rows)


def perception_lead(source: str = "lite_report.json") -> str:
    """The temporal model's lead over per-frame per condition, with its paired-bootstrap 95% interval."""
    lead = lookup(source, "temporal_vs_per_frame")
    rows = [
        [
            CONDITIONS[c],
            fmt(lead[c]["miou"], "signed"),
            fmt(lead[c]["miou_ci95"], "ci"),
            fmt(lead[c]["pixel_accuracy"], "signed"),
            fmt(lead[c]["pixel_accuracy_ci95"], "ci"),
        ]
        for c in CONDITIONS
    ]
    return table(["condition", "mIoU lead", "95% interval", "pixel-accuracy lead", "95% interval"], rows)


def per_class(source: str = "lite_report.json", condition: str = "clean") -> str:
    """Per-class IoU, recall, precision and pixel share of both models, best temporal IoU first."""
    r = lookup(source, f"results.{condition}")
    temporal, per_frame = r["temporal"], r["per_frame"]
    names = sorted(temporal["iou"], key=lambda n: -temporal["iou"][n])
    rows = [
        [
            n,
            fmt(temporal["iou"][n], ".2f"),
            fmt(per_frame["iou"][n], ".2f"),
            fmt(temporal["recall"][n], ".2f"),
            fmt(temporal["precision"][n], ".2f"),
            fmt(100 * temporal["pixel_share"][n], ".3f") + "%",
        ]
        for n in names
    ]
    return table(["class", "IoU (temporal)", "IoU (per-frame)", "recall", "precision", "share of pixels"], rows)


def horizon(source: str) -> str:
    """Per-frame and temporal mIoU per 20-frame stretch of the 80-frame clips, with the lead's 95% interval."""
    r = lookup(source, "results")
    lead = r["temporal_vs_per_frame"]
    rows = [
        [
            f"frames {s}",
            fmt(r["per_frame"][s]["miou"]),
            fmt(r["temporal"][s]["miou"]),
            fmt(lead[s]["miou"], "signed"),
            fmt(lead[s]["miou_ci95"], "ci"),
        ]
        for s in lead
    ]
    return table(["stretch", "per-frame mIoU", "temporal mIoU", "temporal lead", "95% interval"], rows)


def long_drives(source: str) -> str:
    """Per-frame and temporal mIoU per block of the long drives (a report or `temporal_horizon.py --json`), with the
    temporal lead and its 95% interval over drives, and the whole drives last."""
    d = lookup(source, "long_drives")
    rows = [
        [
            f"{b['frames'][0]}-{b['frames'][1]}",
            fmt(b["per_frame"]["miou"]),
            fmt(b["temporal"]["miou"]),
            f"{fmt(b['temporal_vs_per_frame']['miou'], 'signed')} {fmt(b['temporal_vs_per_frame']['miou_ci95'], 'ci')}",
        ]
        for b in [*d["blocks"], {"frames": ("all", ""), **d["overall"]}]
    ]
    rows[-1][0] = "all"
    return table(["frames", "per-frame mIoU", "temporal mIoU", "temporal lead [95% interval over drives]"], rows)


def recall_by_distance(source: str) -> str:
    """The long drives' recall of each road-user class per band of true distance, both modes, with the class's
    true pixels per band."""
    d = lookup(source, "long_drives.recall_by_distance")
    rows = []
    for name, pixels in d["pixels"].items():
        rows.append([name, "true pixels", *(f"{n:,}" for n in pixels)])
        rows += [
            [name, f"recall, {label}", *("-" if r is None else fmt(r) for r in d[mode][name])]
            for mode, label in MODES.items()
        ]
    return table(["class", "", *d["bands"]], rows)


def ego_states(source: str) -> str:
    """The long drives' ego-motion translation per motion state: pairs, true and predicted median metres per step,
    and the mean error of both modes."""
    e = lookup(source, "long_drives.ego_motion")
    rows = [
        [
            state,
            str(e[state]["pairs"]),
            fmt(e[state]["true_translation_median_m"]),
            fmt(e[state]["per_frame"]["predicted_translation_median_m"]),
            fmt(e[state]["temporal"]["predicted_translation_median_m"]),
            fmt(e[state]["per_frame"]["translation_error_m"]),
            fmt(e[state]["temporal"]["translation_error_m"]),
        ]
        for state in ("standing", "starting", "moving")
    ]
    header = ["state", "pairs", "true m", "predicted m, per-frame", "predicted m, temporal", "error m, per-frame"]
    return table([*header, "error m, temporal"], rows)


def interpolation_sweep(source: str) -> str:
    """Val-town mIoU of weights between a stage's start and end (`benchmarks/interpolation_sweep.py --json`), and the
    drives' blocks where the temporal lead's 95% interval is above 0."""
    rows = [
        [
            f,
            *(fmt(r[part][mode]) for part in ("clips", "drives") for mode in ("per_frame", "temporal")),
            f"{r['drives']['blocks_lead_above_0']} of {r['drives']['blocks']}",
        ]
        for f, r in lookup(source, "fractions").items()
    ]
    header = [
        "fraction",
        "val clips, per-frame",
        "val clips, temporal",
        "val drives, per-frame",
        "val drives, temporal",
    ]
    return table([*header, "blocks with a sure temporal lead"], rows)


def agent(source: str) -> str:
    """Three table cells from an `agents.evaluate` JSON: route completion, collisions / km (over km), driving score."""
    s = load(source)
    for key in ("route_completion", "collisions_per_km", "distance_km", "driving_score"):
        lookup(source, key)
    return (
        f"{fmt(s['route_completion'], 'pct')} | {s['collisions_per_km']:.2f} (over {s['distance_km']:.2f} km)"
        f" | {s['driving_score']:.3f}"
    )


def blocks(pattern: str, seeds: str = "0,100,200,300") -> str:
    """Three table cells from the `agents.evaluate` JSONs of one policy's blocks of episodes (``pattern`` with
    ``{seed}`` for each first seed): the driving score of each block and their mean, the episodes that ended on a
    pedestrian (their seeds), and the steps the emergency brake acted on."""
    scores, hits, braked = [], [], 0
    for seed in seeds.split(","):
        source = pattern.format(seed=seed)
        lookup(source, "episodes_detail")
        s = load(source)
        scores.append(s["driving_score"])
        for e in s["episodes_detail"]:
            hits += [str(e["seed"])] * e["infractions"]["collision_pedestrian"]
            braked += e.get("emergency_brake_steps", 0)
    mean = sum(scores) / len(scores)
    hit = f"{len(hits)} ({', '.join(hits)})" if hits else "0"
    return f"{' / '.join(fmt(x) for x in scores)} ({fmt(mean)}) | {hit} | {braked:,}"


def _training(meta: dict[str, Any]) -> str:
    """A policy's training wall time and env steps as its metadata records them; "-" for what it does not."""
    minutes = f"{meta['train_seconds'] / 60:.0f} min" if meta.get("train_seconds") is not None else "-"
    steps = f"{meta['num_timesteps'] / 1000:.0f}k" if meta.get("num_timesteps") is not None else "-"
    return f"{minutes}, {steps}"


def _commands(summary: dict[str, Any]) -> str:
    """The row's training command (or recipe), as its policy records it, and the evaluation command."""
    meta = summary.get("policy_metadata") or {}
    trained = meta.get("recipe") or meta.get("command")
    scored = f"scored: `{summary['command']}`"
    return f"trained: `{trained}`<br>{scored}" if trained else scored


def leaderboard(*rows: tuple[str, str]) -> str:
    """A leaderboard table from `agents.evaluate` JSON files, one ``(label, file)`` per row: routes, route
    completion, driving score and infraction penalty, infractions per km by kind, episodes that ended blocked,
    training time and steps, the training and evaluation commands."""
    kinds = ("collision_pedestrian", "collision_vehicle", "collision_static", "red_light", "lane_invasion", "off_road")
    lines = []
    for label, source in rows:
        for key in (
            "route_completion",
            "driving_score",
            "infraction_penalty",
            "infractions_per_km",
            "episodes_detail",
            "command",
        ):
            lookup(source, key)
        s = load(source)
        per_km = s["infractions_per_km"]
        lines.append(
            [
                label,
                s.get("perception", "-").replace("_", " "),
                f"{s.get('routes') or s['episodes']} ({s['distance_km']:.2f} km)",
                fmt(s["route_completion"], "pct"),
                fmt(s["driving_score"]),
                fmt(s["infraction_penalty"]),
                *(f"{per_km.get(kind, 0.0):.2f}" for kind in kinds),
                str(sum(e["termination"] == "blocked" for e in s["episodes_detail"])),
                _training(s.get("policy_metadata") or {}),
                _commands(s),
            ]
        )
    header = [
        "policy",
        "perception",
        "routes (distance)",
        "route completion",
        "driving score",
        "infraction penalty",
        "pedestrian collisions / km",
        "vehicle collisions / km",
        "static collisions / km",
        "red lights / km",
        "lane invasions / km",
        "off-road / km",
        "episodes ended blocked",
        "training (wall time, env steps)",
        "commands",
    ]
    return table(header, lines)


def weights_card(source: str = "weights") -> str:
    """What the bundled weights are: preset, input, storage, training data and run, test metrics."""
    c = load(source)
    extra, data = c.get("extra", {}), c["training_data"]
    stages = extra.get("train_config", {}).get("stages", [])
    test = c["metrics"]["test"]
    named = [t for t in data["towns"]["train"] if not t.startswith("seed_")]
    recipe, step = [], extra  # fine-tuned weights name the runs they started from in `init_from`, nested
    while "command" in step:
        recipe.insert(0, (step["command"], step.get("train_seconds", 0.0)))
        step = step.get("init_from", {})
    rows = [
        [
            "preset",
            f"`{c['preset']}` ({c['architecture']['backbone']}, `{c['architecture']['seg_head']}` segmentation decoder)",
        ],
        ["input", f"{c['input_size'][0]}x{c['input_size'][1]} RGB, {c['normalization']['scale']}, ImageNet mean / std"],
        ["classes", f"{c['num_classes']} (CARLA's tag order)"],
        ["depth", f"{c['depth']['unit']}, range {c['depth']['range'][0]}-{c['depth']['range'][1]:.0f} m"],
        ["pose", f"`{c['pose']}`"],
        [
            "stored as",
            f"{c.get('storage_dtype', 'float32')} safetensors; format `{c['format']}` v{c['format_version']}",
        ],
        [
            "training commands",
            "; then ".join(f"`{command}` ({seconds / 60:.0f} min)" for command, seconds in recipe) or "-",
        ],
        ["training time", f"{sum(seconds for _, seconds in recipe) / 60:.0f} min" if recipe else "-"],
        [
            "training data",
            f"{data['backend']} world, {data['clips']['train']} clips ({data['frames']} frames) from "
            f"{len(named)} named towns and {len(data['towns']['train']) - len(named)} random ones",
        ],
        ["validation / test towns", f"{', '.join(data['towns']['val'])} / {', '.join(data['towns']['test'])}"],
        [
            "stages (epochs)" + (" of the last command" if len(recipe) > 1 else ""),
            ", ".join(f"{s['name']} {s['epochs']}" for s in stages) or "-",
        ],
        ["software", f"carla-perception-gym {c['software_version']}, torch {c['torch_version']}"],
    ]
    for mode, name in MODES.items():
        m = test[mode]
        rows.append(
            [
                f"test town, {name}",
                f"mIoU {fmt(m['miou'])}, AbsRel {fmt(m['depth']['abs_rel'])}, "
                f"TC {fmt(m['temporal']['tc'])}, "
                f"ego-motion {fmt(m['ego_motion']['translation_error_m'])} m per pair",
            ]
        )
    return table(["field", "value"], rows)


MACROS: dict[str, Callable[..., str]] = {
    f.__name__: f
    for f in (
        fig,
        perception_report,
        perception_lead,
        per_class,
        horizon,
        long_drives,
        recall_by_distance,
        ego_states,
        interpolation_sweep,
        agent,
        blocks,
        leaderboard,
        weights_card,
    )
}


def render(markdown: str, where: str = "page") -> str:
    """Replace every ``{{ macro(args) }}`` in ``markdown``; an unknown macro or bad argument fails the build."""

    def expand(match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2)
        if name not in MACROS:
            raise PluginError(f"docs hook: unknown macro {name!r} in {where} (known: {', '.join(sorted(MACROS))})")
        try:
            parsed = ast.literal_eval(f"({args},)") if args.strip() else ()
        except (ValueError, SyntaxError) as e:
            raise PluginError(f"docs hook: bad arguments {args!r} to {name} in {where}: {e}") from e
        try:
            return MACROS[name](*parsed)
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise PluginError(f"docs hook: {name}({args}) in {where} failed: {e!r}") from e

    rendered = MACRO.sub(expand, markdown)
    check_tables(rendered, where)
    return rendered


def cells(row: str) -> int:
    """How many cells a Markdown table row has: its `|` outside code spans, not escaped, between the outer ones."""
    count, in_code, previous = 0, False, ""
    for char in row.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        elif char == "|" and not in_code and previous != "\\":
            count += 1
        previous = char
    return count + 1


def check_tables(markdown: str, where: str = "page") -> None:
    """Fail the build when a table row has another number of cells than its header: Markdown would silently drop
    or pad cells (e.g. a macro's three cells in a column meant for one)."""
    lines = markdown.splitlines()
    for i in range(1, len(lines)):
        if not re.fullmatch(r"\s*\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?\|?\s*", lines[i]):
            continue
        width = cells(lines[i - 1])
        for row in lines[i + 1 :]:
            if not row.strip().startswith("|"):
                break
            if cells(row) != width:
                raise PluginError(
                    f"docs hook: a table row in {where} has {cells(row)} cells, its header {width}: {row.strip()[:120]}"
                )


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: expand the macros of one page."""
    return render(markdown, page.file.src_uri)
