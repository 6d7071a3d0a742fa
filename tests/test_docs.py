"""The README stays short and true to the result files; the docs hook renders figures from them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def load_hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    head = "\n".join(text.splitlines()[:20])
    assert "pip install torch==2.14.1 torchvision==0.29.1 && pip install -e . && python examples/quickstart.py" in head
    assert 'pip install -e ".[dev,carla]" && python -m pytest' in head


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve_and_no_spec_references(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"SPEC \d", text), f"{path.name} cites the design doc, which is not in the repository"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{path.name} links to {target}, which does not exist"


# the README's agent rows: the bundled policy and PPO from scratch on ground truth
AGENT_ROWS = ("bundled_lite_test30.json", "ppo_gt_260k_test30.json")


def test_readme_headline_figures_match_the_result_files() -> None:
    text = README.read_text()
    report = json.loads((ROOT / "docs/results/lite_report.json").read_text())["results"]["clean"]
    agents = [json.loads((ROOT / f"docs/results/agents/{name}").read_text()) for name in AGENT_ROWS]
    expected = [
        f"mIoU {report['temporal']['miou']:.3f}",
        f"AbsRel {report['temporal']['depth']['abs_rel']:.3f}",
        f"TC {report['temporal']['temporal']['tc']:.3f} vs {report['per_frame']['temporal']['tc']:.3f}",
        f"{report['temporal']['ego_motion']['translation_error_m']:.3f} vs "
        f"{report['per_frame']['ego_motion']['translation_error_m']:.3f} m",
    ]
    for agent in agents:
        expected += [
            f"{100 * agent['route_completion']:.1f}% route completion, {agent['collisions_per_km']:.2f} collisions/km, "
            f"driving score {agent['driving_score']:.3f}",
        ]
    for figure in expected:
        assert figure in text, f"README should quote {figure!r} from the result files"


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    module = load_hooks()
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "a": {"miou": 0.48366, "ci": [-0.00699, 0.00887]},
                "route_completion": 0.98676,
                "collisions_per_km": 0.0,
                "distance_km": 2.25258,
                "driving_score": 0.98676,
            }
        )
    )
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    module.load.cache_clear()
    yield module
    module.load.cache_clear()


@pytest.mark.parametrize(
    "macro, expected",
    [
        ('{{ fig("run.json", "a.miou") }}', "0.484"),
        ('{{ fig("run.json", "a.miou", "pct") }}', "48.4%"),
        ('{{ fig("run.json", "a.ci", "ci") }}', "[-0.007, +0.009]"),
        ('{{ fig("run.json", "a.ci.1", ".4f") }}', "0.0089"),
        ('x {{agent("run.json")}} y', "x 98.7% | 0.00 (over 2.25 km) | 0.987 y"),
    ],
)
def test_hook_renders_figures_from_result_files(hooks, macro: str, expected: str) -> None:
    assert hooks.render(macro) == expected


def test_hook_renders_recall_by_distance_with_a_dash_for_an_empty_band(hooks, tmp_path: Path) -> None:
    section = {
        "bands": ["0-5 m", "5+ m"],
        "pixels": {"Vehicles": [1200, 0]},
        "per_frame": {"Vehicles": [0.25, None]},
        "temporal": {"Vehicles": [0.5, None]},
    }
    (tmp_path / "drives.json").write_text(json.dumps({"long_drives": {"recall_by_distance": section}}))
    lines = hooks.render('{{ recall_by_distance("drives.json") }}').splitlines()
    assert lines[0] == "| class |  | 0-5 m | 5+ m |"
    assert lines[2:] == [
        "| Vehicles | true pixels | 1,200 | 0 |",
        "| Vehicles | recall, per-frame | 0.250 | - |",
        "| Vehicles | recall, temporal | 0.500 | - |",
    ]


def test_hook_renders_blocks_of_episodes_with_their_mean_hits_and_braked_steps(hooks, tmp_path: Path) -> None:
    def episode(seed: int, hit: int, braked: int) -> dict:
        return {"seed": seed, "infractions": {"collision_pedestrian": hit}, "emergency_brake_steps": braked}

    blocks = {0: (0.9, [episode(0, 0, 3), episode(1, 1, 0)]), 100: (0.6, [episode(100, 0, 1000)])}
    for seed, (score, detail) in blocks.items():
        (tmp_path / f"b_{seed}.json").write_text(json.dumps({"driving_score": score, "episodes_detail": detail}))
    assert hooks.render('{{ blocks("b_{seed}.json", "0,100") }}') == "0.900 / 0.600 (0.750) | 1 (1) | 1,003"


@pytest.mark.parametrize(
    "macro, message",
    [
        ('{{ fig("run.json", "a.absrel") }}', "no key 'a.absrel'"),
        ('{{ fig("run.json", "a.ci.2") }}', "no key 'a.ci.2' (missing '2')"),
        ('{{ fig("missing.json", "a") }}', "missing.json not found"),
        ('{{ figure("run.json", "a") }}', "unknown macro 'figure'"),
        ('{{ fig("run.json") }}', "fig"),
    ],
)
def test_hook_fails_the_build_naming_the_problem(hooks, macro: str, message: str) -> None:
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=re.escape(message)):
        hooks.render(macro, "page.md")


@pytest.mark.parametrize(
    "rows, cells",
    [
        (["| a | b |", "| 1 | 2 |"], None),
        (["| a | b |", "| 1 | `x | y` |"], None),  # a pipe in a code span is not a cell border
        (["| a | b |", "| 1 | 2 \\| 3 |"], None),  # nor an escaped one
        (["| a | b |", "| 1 |"], "1 cells, its header 2"),
        (["| policy | figures |", '| p | {{ agent("run.json") }} |'], "4 cells, its header 2"),
    ],
)
def test_hook_fails_the_build_on_a_table_row_of_another_width(hooks, rows: list[str], cells: str | None) -> None:
    from mkdocs.exceptions import PluginError

    header, *body = rows
    markdown = "\n".join(
        ["text", header, "| --- | --- |" if header.startswith("|") else body.pop(0), *body, "", "after"]
    )
    if cells is None:
        hooks.render(markdown, "page.md")
    else:
        with pytest.raises(PluginError, match=f"in page.md has {cells}"):
            hooks.render(markdown, "page.md")


CODE = [
    p
    for folder in ("carla_gym", "perception", "agents", "benchmarks", "examples")
    for p in sorted((ROOT / folder).rglob("*.py"))
]


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_holds_no_design_doc_references_or_dates(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"SPEC \d", text), f"{path} cites the design doc, which is not in the repository"
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{path} holds a date: history belongs in docs/"


def test_weights_card_names_a_fine_tuned_recipe_first_command_first(hooks, tmp_path: Path) -> None:
    config = json.loads((ROOT / "carla_gym/weights/lite/config.json").read_text())
    config["extra"] = {
        "command": "train --init-from b",
        "train_seconds": 600.0,
        "init_from": {"command": "train --init-from a", "train_seconds": 1200.0, "init_from": {"command": "train"}},
    }
    (tmp_path / "card.json").write_text(json.dumps(config))
    rows = {
        line.split(" | ")[0].lstrip("| "): line for line in hooks.render('{{ weights_card("card.json") }}').splitlines()
    }
    assert (
        "`train` (0 min); then `train --init-from a` (20 min); then `train --init-from b` (10 min)"
        in rows["training commands"]
    )
    assert "| 30 min |" in rows["training time"]
    assert "stages (epochs) of the last command" in rows
