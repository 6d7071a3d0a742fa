"""Make a trained policy folder the package's bundled policy (`agents.load_policy("bundled")`).

    python -m agents.bundle runs/ppo/best_policy --scores docs/results/agents/bundled_lite_test30.json \
        --recipe "python -m agents.imitation ... && python -m agents.train_ppo ..." --train-seconds 5400

The policy must have been trained on model perception with the package's bundled perception
weights: its recorded SHA-256 of the weights must be theirs, so `load_policy("bundled")` and the
test suite can tell when the perception changed and the policy was not retrained. `--scores` adds
`agents.evaluate` summaries (by route set) to its metadata, `--recipe` and `--train-seconds` the whole
training recipe's commands and wall time when it took more than the last stage's command. The files
are copied into `agents/bundled/` (package data); the earlier ones are replaced only once all are written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from carla_gym.cli import HelpFormatter

from .policy_files import bundle_policy

# What a score row keeps of an `agents.evaluate` summary (not the per-episode detail).
SCORE_KEYS = (
    "routes",
    "episodes",
    "split",
    "perception",
    "route_completion",
    "driving_score",
    "infraction_penalty",
    "collisions_per_km",
    "infractions_per_km",
    "distance_km",
    "command",
)


def read_scores(files: list[Path]) -> dict[str, dict[str, Any]]:
    """The headline figures of `agents.evaluate` JSON files, keyed by their route set (else the file's name)."""
    scores: dict[str, dict[str, Any]] = {}
    for file in files:
        try:
            summary = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{file}: not a readable agents.evaluate summary ({err})") from None
        if not isinstance(summary, dict) or "route_completion" not in summary:
            raise ValueError(f"{file}: not an agents.evaluate summary (no 'route_completion')")
        scores[str(summary.get("routes") or file.stem)] = {k: summary[k] for k in SCORE_KEYS if k in summary}
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.bundle", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("policy", type=Path, help="policy folder trained on the bundled perception weights")
    parser.add_argument("--scores", type=Path, nargs="+", default=None, help="agents.evaluate JSON summaries to record")
    parser.add_argument("--recipe", default=None, help="the commands of the whole training recipe")
    parser.add_argument("--train-seconds", type=float, default=None, help="the whole recipe's training wall time")
    args = parser.parse_args(argv)
    if args.train_seconds is not None and args.train_seconds < 0:
        parser.exit(2, f"error: --train-seconds must be >= 0, got {args.train_seconds}\n")
    extra = {"recipe": args.recipe, "train_seconds": args.train_seconds}
    try:
        folder = bundle_policy(
            args.policy, read_scores(args.scores or []), {k: v for k, v in extra.items() if v is not None}
        )
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
