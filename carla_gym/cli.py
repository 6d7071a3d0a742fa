"""Shared command-line vocabulary: one flag per concept in every CLI, honest defaults, deprecated aliases.

The same thing is spelled the same way everywhere: `--camera-size H W` for a camera image, `--timesteps`
for env steps to run, `--flag / --no-flag` for booleans. Older spellings stay accepted as aliases that
store into the new option and print a one-line note naming it.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .sim.contract import CROSSING_M


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and shows each option's real default (unless its help names one)."""

    def _format_action(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        shows_default = (
            action.option_strings
            and help_text != argparse.SUPPRESS
            and action.default not in (None, False, argparse.SUPPRESS)
            and "default" not in help_text
        )
        if shows_default:
            default = action.default
            shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
            shown = shown.replace("%", "%%")
            action = copy.copy(action)
            action.help = f"{help_text} (default: {shown})" if help_text else f"default: {shown}"
        return super()._format_action(action)


class StoreTuple(argparse.Action):
    """Stores a multi-value option (e.g. `--camera-size H W`) as a tuple, the type the configs hold."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, tuple(values) if isinstance(values, list | tuple) else values)


def add_camera_size(parser: argparse.ArgumentParser, default: tuple[int, int] | None, help: str) -> None:
    """`--camera-size H W` (stored as a tuple in `camera_size`)."""
    parser.add_argument(
        "--camera-size", type=int, nargs=2, default=default, metavar=("H", "W"), action=StoreTuple, help=help
    )


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (the usage error names the value otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1 (the usage error names the value otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (the usage error names the value otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


class _AscendingPair(argparse.Action):
    """Stores two values as a tuple, refusing (usage error) a first value above the second."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        low, high = values
        if low > high:
            parser.error(f"argument {option_string}: the first value must not exceed the second, got {low:g} {high:g}")
        setattr(namespace, self.dest, (low, high))


def add_pedestrian_crossings(parser: argparse.ArgumentParser, help: str) -> None:
    """`--pedestrian-crossings P`: the env's `pedestrian_crossings` share of episodes (default 0), and
    `--crossing-distance LOW HIGH`: its `crossing_distance_m`, how far along the route they are."""
    parser.add_argument("--pedestrian-crossings", type=share, default=0.0, metavar="P", help=help)
    parser.add_argument(
        "--crossing-distance",
        type=positive_float,
        nargs=2,
        action=_AscendingPair,
        default=CROSSING_M,
        metavar=("LOW", "HIGH"),
        help="metres along the route where those pedestrians step out, drawn uniformly between the two "
        f"(the env's crossing_distance_m; default: {CROSSING_M[0]:g} {CROSSING_M[1]:g})",
    )


class _EmergencyBrake(argparse.Action):
    """Store the env's `emergency_brake` option: True for the flag alone, else the fields of the default brake with
    the road users named as its `groups` and the `FIELD=VALUE` changes made (`EmergencyBrakeConfig.with_changes`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from .env.emergency_brake import EmergencyBrakeConfig  # here: the env package is heavy
        from .env.road_user_gaps import ROAD_USER_GROUPS

        values = list(values or [])
        groups = [v for v in values if v in ROAD_USER_GROUPS]
        changes = [v for v in values if v not in ROAD_USER_GROUPS]
        try:
            for change in changes:
                if "=" not in change:
                    raise ValueError(
                        f"{change!r} is neither a road user ({', '.join(ROAD_USER_GROUPS)}) nor FIELD=VALUE"
                    )
            brake = EmergencyBrakeConfig().with_changes([f"groups={','.join(groups)}"] * bool(groups) + changes)
        except ValueError as err:
            parser.error(f"argument {option_string}: {err}")
        setattr(namespace, self.dest, asdict(brake) if values else True)


def add_emergency_brake(parser: argparse.ArgumentParser, help: str) -> None:
    """`--emergency-brake [ROAD_USER ...] [FIELD=VALUE ...]`: the env's `emergency_brake` option (None without the
    flag, True with it alone, else the default brake's fields with those road users as its groups and those
    changes made), as `EnvConfig.emergency_brake` takes it."""
    from .env.road_user_gaps import ROAD_USER_GROUPS  # here: the env package is heavy, and only env CLIs need it

    parser.add_argument(
        "--emergency-brake",
        nargs="*",
        action=_EmergencyBrake,
        default=None,
        metavar="ROAD_USER|FIELD=VALUE",
        help="an emergency brake under the policy: a full brake while perception sees a road user (of the kinds "
        f"given: {', '.join(ROAD_USER_GROUPS)}; all when none are) in the route's path within stopping distance "
        "(the env's emergency_brake option; default: none); FIELD=VALUE changes a field of the brake or of its gaps "
        f"(carla_gym.env.EmergencyBrakeConfig, e.g. min_height_m=0.3); {help}",
    )


def add_frame_stack(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """`--frame-stack N`: how many of the last observations a policy sees at once (SB3's VecFrameStack)."""
    parser.add_argument("--frame-stack", type=positive_int, default=default, metavar="N", help=help)


def deprecated_alias(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    old: str,
    new: str,
    dest: str,
    convert: Callable[[str], Any] = str,
    metavar: str | None = None,
) -> None:
    """Accept `old VALUE` as the deprecated spelling of `new`: the value (through `convert`, whose
    argparse.ArgumentTypeError becomes the usage error) is stored in `dest` after a one-line note."""

    class Alias(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: str | Sequence[Any] | None,
            option_string: str | None = None,
        ) -> None:
            print(f"note: {old} is deprecated; use {new}", file=sys.stderr)
            setattr(namespace, dest, values)

    parser.add_argument(
        old,
        type=convert,
        dest=dest,
        action=Alias,
        default=argparse.SUPPRESS,
        metavar=metavar,
        help=f"deprecated: use {new}",
    )
