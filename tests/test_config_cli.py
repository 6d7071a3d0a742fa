"""Flags derived from config dataclasses: types, help, per-stage values, saved configs, the training CLI's use."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carla_gym import train_perception
from carla_gym.config_cli import ConfigFlags, PerStageFlags, field_help, from_dict, parse_value
from perception.models import get_preset, parse_overrides
from perception.training import StageConfig, TrainConfig, default_config


@dataclass
class Inner:
    count: int = 1


@dataclass
class Toy:
    rate: float = field(default=0.5, metadata={"help": "how fast"})
    # the size of it
    # in two lines
    size: tuple[int, int] = (2, 3)
    flag: bool = True
    name: str = "a"
    cap: int | None = None  # at most this many
    noted: int = field(default=0, metadata={"help": "from the metadata"})  # not this comment
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


@dataclass
class Stage:
    name: str
    epochs: int = 1
    keep: bool = True
    chunk: int | None = None


@pytest.mark.parametrize(
    "text, annotation, expected",
    [("3", int, 3), (" 1e-3", float, 1e-3), ("none", int | None, None), ("7", int | None, 7), ("off", bool, False)],
)
def test_parse_value(text, annotation, expected):
    assert parse_value(text, annotation) == expected


@pytest.mark.parametrize("text, annotation", [("x", int), ("1.5", int), ("none", int), ("maybe", bool)])
def test_parse_value_rejects(text, annotation):
    with pytest.raises(ValueError, match=repr(text)):
        parse_value(text, annotation)


def test_help_from_metadata_or_override():
    assert field_help(Toy, "noted") == "from the metadata"
    assert field_help(Toy, "cap") == ""  # a comment is for readers of the code, not help
    assert field_help(Toy, "noted", {"noted": "override"}) == "override"


def _toy_parser(**kwargs) -> tuple[argparse.ArgumentParser, ConfigFlags]:
    flags = ConfigFlags(Toy, skip=("inner", "items"), **kwargs)
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    return parser, flags


def test_config_flags_types_and_only_given_values():
    parser, flags = _toy_parser(prefix="toy-", rename={"name": "--label"})
    args = parser.parse_args(["--toy-rate", "2", "--toy-size", "4", "5", "--no-toy-flag", "--label", "b"])
    assert flags.given(args) == {"rate": 2.0, "size": (4, 5), "flag": False, "name": "b"}
    assert flags.given(parser.parse_args([])) == {}  # nothing given: the config keeps its own values
    assert flags.given(parser.parse_args(["--toy-cap", "none"])) == {"cap": None}
    assert flags.option("name") == "--label"


def test_config_flags_bad_value_is_a_usage_error(capsys):
    parser, _ = _toy_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--rate", "fast"])
    assert e.value.code == 2 and "--rate" in capsys.readouterr().err


def test_config_flags_help_shows_the_defaults():
    parser, _ = _toy_parser(defaults=Toy(rate=0.25), default_label="the preset's;")
    text = " ".join(parser.format_help().split())
    assert "how fast (default: the preset's; 0.25)" in text
    assert "--flag, --no-flag" in text and "(default: the preset's; on)" in text


STAGES = ("a", "b", "c")


def _stage_parser() -> tuple[argparse.ArgumentParser, PerStageFlags]:
    flags = PerStageFlags(Stage, STAGES, skip=("name",), single={"chunk": "stage c"})
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    return parser, flags


@pytest.mark.parametrize(
    "argv, stage, takes_single, expected",
    [
        (["--epochs", "4,5,6"], "b", True, (True, 5)),  # one value per stage, in order
        (["--epochs", "c=9"], "c", True, (True, 9)),  # by name
        (["--epochs", "c=9"], "a", True, (False, None)),  # a stage it does not name keeps its value
        (["--epochs", "3"], "a", True, (True, 3)),  # a single value
        (["--chunk", "3"], "a", False, (False, 3)),  # ... only for the stages it goes to
        (["--chunk", "b=none,c=4"], "b", True, (True, None)),
        (["--keep", "yes,no,1"], "b", True, (True, False)),
    ],
)
def test_per_stage_values(argv, stage, takes_single, expected):
    parser, flags = _stage_parser()
    (value,) = flags.given(parser.parse_args(argv)).values()
    assert value.value_for(stage, takes_single) == expected
    assert value.text == argv[1]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--epochs", "1,2"], "got 2 values"),
        (["--epochs", "d=1"], "unknown stage 'd'"),
        (["--epochs", "a=1,2"], "'2' is not stage=value"),
        (["--keep", "a=maybe"], "expected true or false"),
    ],
)
def test_per_stage_bad_values(argv, needle, capsys):
    parser, _ = _stage_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and argv[0] in err and needle in err


def test_from_dict_round_trip_and_defaults():
    toy = Toy(size=(4, 5), cap=3, inner=Inner(2), items=[Inner(3)])
    assert from_dict(Toy, json.loads(json.dumps(dataclasses.asdict(toy))), "toy") == toy
    assert from_dict(Toy, {"rate": 1}, "toy") == Toy(rate=1.0)  # missing fields keep their defaults
    unknown: list[str] = []
    assert from_dict(Toy, {"gone": 1, "inner": {"old": 2}}, "f", unknown) == Toy()
    assert unknown == ["f.gone", "f.inner.old"]


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"gone": 1}, "toy.gone: no such setting"),
        ({"size": [1]}, "toy.size: expected"),
        ({"flag": 1}, "toy.flag: expected bool, got 1"),
        ({"items": [{"count": "3"}]}, "toy.items[0].count: expected int"),
        ({"cap": None, "rate": None}, "toy.rate: expected float, got None"),
    ],
)
def test_from_dict_names_the_bad_setting(data, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Toy, data, "toy")


# --- the training CLI ----------------------------------------------------------------------------------------


def _config(*argv: str) -> TrainConfig:
    parser = train_perception.build_parser()
    return train_perception.make_config(parser.parse_args(list(argv)), parser)


def test_every_config_field_has_a_flag():
    """A new field of the stage, training, episode or long-drive config gets its flag without an edit here."""
    parser = train_perception.build_parser()
    options = {o for a in parser._actions for o in a.option_strings}
    stage_fields = {f.name for f in dataclasses.fields(StageConfig)} - {"name"}
    assert {f.field for f in train_perception.STAGE_FLAGS.flags} == stage_fields
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {
        "preset",
        "architecture",  # --arch: FIELD=VALUE pairs
        "profile",
        "stages",
        "episodes",
    }
    assert {f.field for f in train_perception.TRAIN_FLAGS.flags} == train_fields
    for flags in (train_perception.TRAIN_FLAGS, train_perception.EPISODE_FLAGS, train_perception.DRIVE_FLAGS):
        assert {f.option for f in flags.flags} <= options  # each one added to a group
        assert [f.field for f in flags.flags if not field_help(flags.cls, f.field)] == []  # and has its help
    assert [f for f in stage_fields if not field_help(StageConfig, f)] == []


def test_help_groups_and_defaults():
    text = " ".join(train_perception.build_parser().format_help().split())
    for group in ("data:", "stages:", "training:", "report:", "output:"):
        assert group in text
    assert "(default: the preset's; lite 7,11,4,4,2)" in text  # --epochs
    assert "(default: the preset's; lite none,none,none,none,20)" in text  # --bptt


def test_stage_flags_by_name_and_any_field():
    cfg = _config("--profile", "smoke", "--bptt", "seq=3", "--keep-best", "seq=true", "--patience", "5")
    seq = cfg.stage("seq")
    assert (seq.bptt, seq.keep_best) == (3, True)
    assert [s.patience for s in cfg.stages] == [5, 5, 5, 5, 5]
    assert cfg.stage("seg").keep_best is True and cfg.stage("seg").bptt is None


def test_train_drive_frames_sets_the_drive_window_unless_window_sets_it():
    assert _config("--train-drive-frames", "200").stage("drive").window == 200
    cfg = _config("--train-drive-frames", "200", "--window", "ego=8")  # --window leaves the drive stage alone
    assert (cfg.stage("drive").window, cfg.stage("drive").stride, cfg.stage("ego").window) == (200, 200, 8)
    assert cfg.stage("seq").window == 20  # the seq stage keeps its clip-length window
    assert _config("--train-drive-frames", "200", "--window", "drive=50").stage("drive").window == 50


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--epochs=-1,0,0,0,0"], "--epochs -1,0,0,0,0: must not be negative"),
        (["--batch-size", "0"], "--batch-size 0: a batch needs at least 1 item"),
        (["--clutter", "seq=1.5"], "--clutter seq=1.5: probabilities must be at most 1"),
        (["--hold", "ego=2"], "--hold ego=2: probabilities must be at most 1"),
        (["--bptt", "seq=1"], "--bptt seq=1: a chunk needs at least 2 frames"),
        (["--schedule", "seg=linear"], "--schedule seg=linear: known schedules: plateau, cosine"),
        (["--window", "ego=1"], "--window ego=1: a window needs at least 2 frames"),
        (["--extra-towns", "-1"], "--extra-towns -1: must not be negative"),
        (["--camera-size", "0", "64"], "--camera-size 0 64: an image needs at least 1 pixel"),
        (["--depth-loss", "l2"], "--depth-loss l2: known depth losses"),
        (["--train-drives", "-2"], "--train-drives -2: must not be negative"),
        (["--preset", "full", "--config", "x.json"], "--preset with --config"),
        (["--arch", "seg_skips=s2"], "--arch seg_skips=s2: 'seg_skips=s2': expected FIELD=VALUE with FIELD one of"),
        (["--arch", "hidden_channels=wide"], "'hidden_channels=wide': expected int, got 'wide'"),
        (["--arch", "seg_skip_names=s8,s4"], "one width per skip plus one"),
    ],
)
def test_bad_values_exit_naming_flag_and_value(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        _config("--profile", "smoke", *argv) if "--config" not in argv else _config(*argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and "Traceback" not in err


def test_arch_pairs_add_to_the_config_files_and_later_ones_win(tmp_path: Path):
    arch = ["seg_skip_names=s8,s4,s2", "seg_decoder_widths=64,48,32,16"]
    cfg = _config("--profile", "smoke", "--arch", *arch)
    assert cfg.architecture == arch
    saved = tmp_path / "train_config.json"
    saved.write_text(json.dumps(cfg.to_dict()))
    again = _config("--config", str(saved), "--arch", "seg_decoder_widths=64,48,32,24")
    assert again.architecture == [*arch, "seg_decoder_widths=64,48,32,24"]
    assert parse_overrides(again.architecture)["seg_decoder_widths"] == (64, 48, 32, 24)


def test_network_is_the_preset_with_arch_changes_at_the_camera_size():
    cfg = _config(
        "--profile", "smoke", "--camera-size", "96", "192", "--crop", "64", "128", "--arch", "hidden_channels=32"
    )
    net = cfg.network()
    assert (net.name, net.input_size, net.hidden_channels) == ("lite", (96, 192), 32)
    assert net.embed_channels == get_preset("lite").embed_channels


def test_config_file_reproduces_a_run_with_overrides(tmp_path: Path):
    saved = default_config("lite", "smoke")
    saved.zoom, saved.stage("ego").lr = 1.25, 1e-4
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({"preset": "lite", "extra": {"train_config": saved.to_dict()}}))
    assert _config("--config", str(weights)).to_dict() == saved.to_dict()
    cfg = _config("--config", str(weights / "config.json"), "--epochs", "seq=3", "--no-mirror", "--stages", "ego,seq")
    assert [s.name for s in cfg.stages] == ["ego", "seq"]
    assert (cfg.stage("seq").epochs, cfg.mirror, cfg.zoom, cfg.stage("ego").lr) == (3, False, 1.25, 1e-4)
    assert cfg.profile == "smoke"  # the file's profile, not the default one


def test_config_file_from_the_bundled_weights():
    """The bundled weights' saved settings read back; settings added since keep their defaults."""
    bundled = Path(train_perception.__file__).parent / "weights" / "lite"
    cfg = _config("--config", str(bundled))
    stored = json.loads((bundled / "config.json").read_text())["extra"]["train_config"]
    assert [s.epochs for s in cfg.stages] == [s["epochs"] for s in stored["stages"]]
    assert cfg.zoom == stored["zoom"] and cfg.size == tuple(stored["size"])


def test_differences_compare_nested_fields_one_by_one():
    """A setting added inside `episodes` since a run was stored is not a difference; a changed one is named."""
    cfg = default_config("lite", "smoke")
    stored = json.loads(json.dumps(cfg.to_dict()))
    del stored["episodes"]["crossing"]
    assert cfg.differences(stored) == []
    stored["episodes"]["follow"] = cfg.episodes.follow + 2
    assert cfg.differences(stored) == [
        f"episodes.follow: {cfg.episodes.follow + 2} stored vs {cfg.episodes.follow} now"
    ]


def test_the_default_command_is_the_bundled_weights_recipe():
    """`python -m carla_gym.train_perception` with no flags trains the network the bundled weights are, with the
    settings they were trained with (architecture changes a run made by flag may since be the preset's own)."""
    bundled = Path(train_perception.__file__).parent / "weights" / "lite"
    stored = json.loads((bundled / "config.json").read_text())["extra"]["train_config"]
    default = _config()
    assert [d for d in default.differences(stored) if not d.startswith("architecture:")] == []
    assert default.network() == _config("--config", str(bundled)).network()


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{ not json", "cannot read the config file"),
        (json.dumps({"zoom": "big"}), "train_config.zoom: expected float, got 'big'"),
        (json.dumps({"stages": []}), "has no stages"),
    ],
)
def test_bad_config_file_is_named(content, needle, tmp_path: Path, capsys):
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as e:
        _config("--config", str(path))
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and str(path) in err


def test_config_file_setting_removed_since_is_named_and_left_out(tmp_path: Path, capsys):
    data = default_config("lite", "smoke").to_dict()
    data["retired"] = 1
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    assert _config("--config", str(path)).to_dict() == default_config("lite", "smoke").to_dict()
    assert "train_config.retired is not a setting any more" in capsys.readouterr().err
