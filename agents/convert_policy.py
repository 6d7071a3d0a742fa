"""Convert a trusted Stable-Baselines3 PPO .zip into a policy folder (JSON + safetensors, no pickle).

    python -m agents.convert_policy runs/ppo/best_model.zip runs/ppo/best_policy --trust-pickle --perception model

Loading the .zip unpickles it, which runs any code its author put in the file, so this needs
`--trust-pickle`: convert only files you made or trust. The folder it writes loads without pickle
(`agents.load_policy`, `python -m agents.evaluate FOLDER`). For a .zip from RL Baselines3 Zoo the
run's frame stacking and VecNormalize statistics (`CarlaPerception-v0/` next to it) are converted
too; `--frame-stack` and `--vecnormalize` name them for other layouts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carla_gym.cli import HelpFormatter, add_frame_stack

from .policy_files import save_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.convert_policy",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="SB3 PPO / A2C .zip (trusted: it is unpickled)")
    parser.add_argument("out", type=Path, help="policy folder to write")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        required=True,
        help="confirm that CHECKPOINT is trusted: loading it runs any code it holds",
    )
    parser.add_argument(
        "--perception",
        choices=("model", "ground_truth"),
        default=None,
        help="the perception the policy was trained on (recorded in the folder's metadata)",
    )
    add_frame_stack(parser, None, "frames the policy stacks (default: its Zoo run's)")
    parser.add_argument(
        "--vecnormalize",
        type=Path,
        default=None,
        help="SB3 vecnormalize.pkl of training (a pickle; default: its Zoo run's)",
    )
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.exit(2, f"error: {args.checkpoint}: no such file\n")
    from .policies import load_zoo_run

    try:
        driver = load_zoo_run(args.checkpoint, "cpu", args.frame_stack, args.vecnormalize)
        metadata = {"converted_from": str(args.checkpoint), "num_timesteps": driver.model.num_timesteps}
        if args.perception:
            metadata["perception"] = args.perception
        save_policy(driver.model, args.out, metadata, driver.normalization, driver.frame_stack)
    except (FileExistsError, FileNotFoundError, TypeError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
