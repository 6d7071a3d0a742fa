"""The docs hook's leaderboard table: one row per `agents.evaluate` JSON, figures as the file holds them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_hooks_leaderboard", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = {
        "routes": "test30",
        "perception": "ground_truth",
        "episodes": 30,
        "distance_km": 6.5,
        "route_completion": 0.9,
        "driving_score": 0.42,
        "infraction_penalty": 0.6,
        "infractions_per_km": {"collision_vehicle": 0.3076923, "red_light": 1.5},
        "policy_metadata": {"train_seconds": 3000, "num_timesteps": 280000, "command": "python -m agents.train_ppo"},
        "command": "python -m agents.evaluate runs/p --routes test30",
        "episodes_detail": [{"termination": "blocked"}, {"termination": "route_completed"}, {"termination": "blocked"}],
    }
    (tmp_path / "row.json").write_text(json.dumps(row))
    (tmp_path / "bare.json").write_text(json.dumps({k: v for k, v in row.items() if k != "policy_metadata"}))
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in row.items() if k != "command"}))
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    module.load.cache_clear()
    yield module
    module.load.cache_clear()


def test_leaderboard_renders_one_row_per_result_file(hooks) -> None:
    text = hooks.render('{{ leaderboard(("PPO (scratch)", "row.json"), ("autopilot", "bare.json")) }}')
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| policy | perception | routes")
    assert lines[2] == (
        "| PPO (scratch) | ground truth | test30 (6.50 km) | 90.0% | 0.420 | 0.600 | 0.00 | 0.31 | 0.00 | 1.50 "
        "| 0.00 | 0.00 | 2 | 50 min, 280k "
        "| trained: `python -m agents.train_ppo`<br>scored: `python -m agents.evaluate runs/p --routes test30` |"
    )
    assert lines[3].endswith(
        "| 0.00 | 0.00 | 2 | -, - | scored: `python -m agents.evaluate runs/p --routes test30` |"
    )  # no metadata: no training command either


def test_leaderboard_fails_the_build_on_a_row_without_its_command(hooks) -> None:
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=re.escape("old.json has no key 'command'")):
        hooks.render('{{ leaderboard(("x", "old.json")) }}', "agents.md")
