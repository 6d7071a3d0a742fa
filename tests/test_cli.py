"""One command-line vocabulary: new spellings, deprecated aliases that parse to the same value, honest help."""

from __future__ import annotations

import argparse

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import evaluate, imitation, train_ppo
from carla_gym import collect, train_perception
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
    assert evaluate.CAMERA_SIZE == train_ppo.build_parser().parse_args([]).camera_size


def test_train_ppo_logs_train_losses_from_the_first_update(tmp_path):
    out = tmp_path / "ppo"
    argv = ["--timesteps", "64", "--n-steps", "64", "--batch-size", "32", "--n-epochs", "1", "--out", str(out)]
    assert train_ppo.main([*argv, "--save-freq", "64", "--no-progress-bar", *TINY_PPO]) == 0
    (events,) = (out / "tb").rglob("events.out.tfevents.*")  # a one-update run
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"} <= set(scalars)


def test_train_ppo_falls_back_to_a_tqdm_bar_without_rich(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_ppo, "has_rich_progress_bar", lambda: False)
    argv = ["--timesteps", "64", "--n-steps", "64", "--batch-size", "32", "--n-epochs", "1", "--save-freq", "64"]
    assert train_ppo.main([*argv, "--out", str(tmp_path / "ppo"), *TINY_PPO]) == 0
    assert "64/64" in capsys.readouterr().err
