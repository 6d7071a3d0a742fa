"""One command-line vocabulary: new spellings, deprecated aliases that parse to the same value, honest help."""

from __future__ import annotations

import argparse
import inspect

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import evaluate, imitation, train_ppo
from carla_gym import collect, evaluate_perception, train_perception
from carla_gym.cli import HelpFormatter, add_camera_size, deprecated_alias

TINY_PPO = ["--n-envs", "1", "--perception", "ground_truth", "--camera-size", "64", "128", "--eval-freq", "0"]


@pytest.mark.parametrize("build_parser", [collect.build_parser, train_perception.build_parser])
def test_size_alias_parses_as_camera_size(build_parser, capsys):
    parser = build_parser()
    new = parser.parse_args(["--camera-size", "96", "192"])
    capsys.readouterr()
    old = parser.parse_args(["--size", "96x192"])
    assert new.camera_size == old.camera_size == (96, 192)
    assert "--size is deprecated; use --camera-size" in capsys.readouterr().err
    assert "size" not in vars(old)  # one destination: nothing reads the old name


def test_collect_camera_size_default_and_bad_alias_value(capsys):
    assert collect.build_parser().parse_args([]).camera_size == (256, 512)
    with pytest.raises(SystemExit) as err:
        collect.build_parser().parse_args(["--size", "96by192"])
    assert err.value.code == 2
    assert "--size" in capsys.readouterr().err


def test_imitation_steps_alias_parses_as_timesteps(capsys):
    parser = imitation.build_parser()
    assert parser.parse_args(["--timesteps", "480"]).timesteps == 480
    capsys.readouterr()
    assert parser.parse_args(["--steps", "480"]).timesteps == 480
    assert "--steps is deprecated; use --timesteps" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [([], True), (["--use-sde"], True), (["--no-use-sde"], False)])
def test_use_sde_is_a_boolean_flag(argv, expected):
    assert train_ppo.build_parser().parse_args(argv).use_sde is expected


def test_use_sde_no_longer_takes_a_number(capsys):
    with pytest.raises(SystemExit):
        train_ppo.build_parser().parse_args(["--use-sde", "0"])
    assert "unrecognized arguments: 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("build_parser", "option", "shown"),
    [
        (train_ppo.build_parser, "--use-sde, --no-use-sde", "(default: True)"),
        (train_ppo.build_parser, "--n-steps", "(default: 512)"),
        (imitation.build_parser, "--timesteps", "(default: 45000)"),
        (collect.build_parser, "--camera-size", "(default: 256 512)"),
        (train_perception.build_parser, "--epochs N[,N...]", "(default: the preset's; lite 7,11,4,4,2)"),
        (train_perception.build_parser, "--mirror, --no-mirror", "(default: the preset's; lite on)"),
        (train_perception.build_parser, "--eval-drives N", "(default: the profile's; default profile 10)"),
        (evaluate_perception.build_parser, "--drive-frames", "(default: 1000)"),
    ],
)
def test_help_shows_the_real_default(build_parser, option, shown):
    text = " ".join(build_parser().format_help().split("options:")[1].split())  # undo line wrapping
    after = text[text.index(option) :]
    assert shown in after[: after.index(" --", len(option))]


def test_help_formatter_does_not_repeat_a_default_the_help_names():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--a", type=int, default=3, help="a (default 3)")
    parser.add_argument("--b", type=int, default=4)
    parser.add_argument("--c", default=None, help="c")
    add_camera_size(parser, (8, 16), "camera")
    deprecated_alias(parser, "--old-a", "--a", "a", int)
    text = parser.format_help()
    assert text.count("default") == 3  # --a's own, --b's and --camera-size's
    assert "default: 4" in text and "(default: 8 16)" in text


def test_evaluate_and_train_ppo_spell_camera_size_the_same():
    for parser in (train_ppo.build_parser(), imitation.build_parser()):
        assert parser.parse_args(["--camera-size", "64", "128"]).camera_size == (64, 128)
    # no default of their own: both leave it to the env (the perception weights' input size)
    assert inspect.signature(evaluate.evaluate).parameters["camera_size"].default is None
    assert train_ppo.build_parser().parse_args([]).camera_size is None


def test_train_ppo_logs_train_losses_from_the_first_update(tmp_path):
    out = tmp_path / "ppo"
    argv = ["--timesteps", "64", "--n-steps", "64", "--batch-size", "32", "--n-epochs", "1", "--out", str(out)]
    assert train_ppo.main([*argv, "--save-freq", "64", "--no-progress-bar", *TINY_PPO]) == 0
    (events,) = (out / "tb").rglob("events.out.tfevents.*")  # a one-update run
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"} <= set(scalars)


def test_train_ppo_shows_a_progress_bar_over_the_steps(tmp_path, capsys):
    argv = ["--timesteps", "64", "--n-steps", "64", "--batch-size", "32", "--n-epochs", "1", "--save-freq", "64"]
    assert train_ppo.main([*argv, "--out", str(tmp_path / "ppo"), *TINY_PPO]) == 0
    assert "64/64" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "read"),
    [
        (["--epochs", "2,1,1,2,3"], lambda c, d: [s.epochs for s in c.stages] == [2, 1, 1, 2, 3]),
        (["--batch-size", "4,4,2,1,1"], lambda c, d: [s.batch_size for s in c.stages] == [4, 4, 2, 1, 1]),
        (["--lr", "1e-3,1e-3,1e-3,1e-4,1e-5"], lambda c, d: (c.stage("seq").lr, c.stage("drive").lr) == (1e-4, 1e-5)),
        (["--clutter", "0,0,0,0.5,0.4"], lambda c, d: [s.clutter_p for s in c.stages] == [0, 0, 0, 0.5, 0.4]),
        (["--hold", "ego=0.5"], lambda c, d: [s.hold_p for s in c.stages] == [0, 0, 0.5, 0.25, 0]),
        (["--window", "6"], lambda c, d: [s.window for s in c.stages] == [1, 1, 6, 6, 6]),
        (["--bptt", "4"], lambda c, d: [s.bptt for s in c.stages] == [None, None, None, 4, 4]),
        (["--no-mirror", "--zoom", "1.2"], lambda c, d: (c.mirror, c.zoom) == (False, 1.2)),
        (["--clips", "2", "--frames", "9", "--extra-towns", "0"], lambda c, d: (c.clips, c.frames) == (2, 9)),
        (["--episode-clips", "2", "--train-drives", "3"], lambda c, d: (c.episodes.clips, c.episodes.drives) == (2, 3)),
        (["--seed", "3", "--workers", "1"], lambda c, d: (c.seed, c.workers) == (3, 1)),
        (
            ["--eval-drives", "0", "--drive-frames", "20", "--drive-block", "5"],
            lambda c, d: (d.drives, d.block) == (0, 5),
        ),
    ],
)
def test_train_perception_keeps_its_flags(argv, read):
    """The training CLI's flags, now derived from the config dataclasses, keep their names and meaning."""
    parser = train_perception.build_parser()
    args = parser.parse_args(["--profile", "smoke", *argv])
    cfg = train_perception.make_config(args, parser)
    assert read(cfg, train_perception.long_drive_config(args, parser, cfg.profile))


def test_evaluate_perception_long_drive_flags_fill_the_long_drive_config():
    args = evaluate_perception.build_parser().parse_args(
        ["w", "--data", "d", "--long-drives", "2", "--drive-block", "50", "--drive-starting-frames", "4"]
    )
    given = evaluate_perception.DRIVE_FLAGS.given(args)
    assert given == {"drives": 2, "block": 50, "starting_frames": 4}


@pytest.mark.parametrize(
    ("main", "argv", "flag"),
    [
        (train_ppo.main, ["--timesteps", "0"], "--timesteps"),
        (train_ppo.main, ["--timesteps", "-5"], "--timesteps"),
        (train_ppo.main, ["--n-envs", "0"], "--n-envs"),
        (train_ppo.main, ["--n-steps", "0"], "--n-steps"),
        (train_ppo.main, ["--save-freq", "0"], "--save-freq"),
        (train_ppo.main, ["--eval-episodes", "0"], "--eval-episodes"),
        (train_ppo.main, ["--eval-freq", "-1"], "--eval-freq"),
        (train_ppo.main, ["--bc-epochs", "-1"], "--bc-epochs"),
        (imitation.main, ["--epochs", "0"], "--epochs"),
        (evaluate.main, ["random", "--episodes", "0"], "--episodes"),
        (evaluate.main, ["random", "--max-steps", "0"], "--max-steps"),
        (collect.main, ["--clips", "0"], "--clips"),
        (collect.main, ["--warmup", "-1"], "--warmup"),
        (evaluate_perception.main, ["WEIGHTS", "--max-clips", "0"], "--max-clips"),
        (train_ppo.main, ["--timesteps", "many"], "--timesteps"),
    ],
)
def test_counts_out_of_range_are_usage_errors_before_anything_runs(main, argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(out)] if main in (train_ppo.main, imitation.main, collect.main) else argv)
    assert err.value.code == 2
    assert f"argument {flag}: must be" in capsys.readouterr().err
    assert not out.exists()  # nothing written, no world started
