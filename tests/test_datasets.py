"""The recording library (`carla_gym.datasets`, `carla_gym.training_data`) used without any command line,
the report writer (`perception.training.report`), and the rule that no library imports a CLI."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from carla_gym import datasets, training_data
from carla_gym.datasets import RecordingConfig, RecordingError, record_clips
from carla_gym.recording import ClipMismatchError
from carla_gym.sim import SimulatorError, backend_class
from perception import build_model
from perception.data import ClipStore
from perception.training.long_drives import LongDriveConfig
from perception.training.report import report_text, write_report

REPO = Path(__file__).resolve().parents[1]
TINY = {"towns": ("grid_suburb",), "clips": 2, "frames": 2, "size": (16, 32), "warmup": 0}


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"drive": "episode", "warmup": 5}, "--warmup 5: --drive episode records from the first tick"),
        ({"name": "../x"}, "--name '../x'"),
        ({"name": "-x"}, "--name '-x'"),
        ({"clips": 0}, "--clips, --frames and --every must be >= 1"),
        ({"frames": 0}, "--clips, --frames and --every must be >= 1"),
        ({"every": 0}, "--clips, --frames and --every must be >= 1"),
        ({"warmup": -1}, "--warmup >= 0"),
        ({"drive": "race"}, "--drive 'race'"),
        ({"split": "holdout"}, "--split 'holdout'"),
        ({"size": (0, 32)}, "--camera-size"),
        ({"backend": "nosuch"}, "unknown simulator backend 'nosuch'"),
        (
            {"towns": ("harbour_district",), "split": "train"},
            "'harbour_district' belongs to the 'test' split, not 'train'",
        ),
    ],
)
def test_recording_config_names_the_bad_option(options: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        RecordingConfig(**options)
    assert needle in str(err.value)


@pytest.mark.parametrize("drive, warmup, name", [("warmup", datasets.WARMUP_STEPS, "clip"), ("episode", 0, "episode")])
def test_recording_config_defaults_follow_the_drive(
    drive: str, warmup: int, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    config = RecordingConfig(drive=drive)
    assert (config.warmup, config.name, config.out) == (warmup, name, tmp_path / "clips")
    assert ("route_length" in config.drive_extra()) is (drive == "episode")


def test_recording_config_jobs() -> None:
    """Seeds become random towns in seed_N folders, labelled with the split; named towns keep theirs; no towns:
    every town of the split."""
    jobs = RecordingConfig(towns=(" 1003", "harbour_district", ""), split=None).jobs()
    assert jobs == [(1003, "seed_1003", None), ("harbour_district", "harbour_district", "test")]
    assert RecordingConfig(towns=("1003",), split="train").jobs() == [(1003, "seed_1003", "train")]
    assert [j[1] for j in RecordingConfig(split="val").jobs()] == list(backend_class("embedded").towns("val"))
    assert RecordingConfig(towns=()).jobs() == []


@pytest.mark.parametrize("text, expected", [("128x256", (128, 256)), ("16X32", (16, 32))])
def test_parse_size(text: str, expected: tuple) -> None:
    assert datasets.parse_size(text) == expected


@pytest.mark.parametrize("text, needle", [("128by256", "HEIGHTxWIDTH"), ("0x32", "positive")])
def test_parse_size_rejects(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        datasets.parse_size(text)


def test_record_clips_returns_a_summary_and_resumes(tmp_path: Path) -> None:
    config = RecordingConfig(**TINY, out=tmp_path)
    summary = record_clips(config, progress=False)
    assert summary.written == 2 and summary.out == tmp_path
    assert list(summary.class_pixels) == ["grid_suburb"]
    assert summary.class_pixels["grid_suburb"].sum() == 2 * 2 * 16 * 32  # every pixel of every frame, once
    assert "Road" in summary.table()
    assert [c.path.name for c in ClipStore(tmp_path).clips()] == ["clip_0000", "clip_0001"]
    again = record_clips(config, progress=False)
    assert again.written == 0 and again.table() == "no new frames recorded (all clips were already complete)"


def test_record_clips_refuses_other_settings_before_recording(tmp_path: Path) -> None:
    record_clips(RecordingConfig(**{**TINY, "clips": 1}, out=tmp_path), progress=False)
    meta = (tmp_path / "grid_suburb" / "clip_0000" / "meta.json").read_text()
    with pytest.raises(ClipMismatchError, match="num_frames: 2 on disk vs 3 requested"):
        record_clips(RecordingConfig(**{**TINY, "frames": 3}, out=tmp_path), progress=False)
    assert (tmp_path / "grid_suburb" / "clip_0000" / "meta.json").read_text() == meta
    assert not (tmp_path / "grid_suburb" / "clip_0001").exists()  # clip 1 was not recorded either


def test_simulator_failure_keeps_the_complete_clips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend fails while recording the second clip: RecordingError says how many are complete, the first
    clip stays, and recording again completes the rest."""
    real = datasets.make_backend

    def failing_backend(*args, **kwargs):
        backend = real(*args, **kwargs)
        resets = 0
        original = backend.reset

        def reset(*a, **k):
            nonlocal resets
            resets += 1
            if resets == 2:
                raise SimulatorError("lost the server")
            return original(*a, **k)

        backend.reset = reset
        return backend

    monkeypatch.setattr(datasets, "make_backend", failing_backend)
    config = RecordingConfig(**TINY, out=tmp_path)
    with pytest.raises(RecordingError, match=r"lost the server\n\(1 complete clip\(s\) are in .*; re-run to resume\)"):
        record_clips(config, progress=False)
    assert [c.path.name for c in ClipStore(tmp_path).clips()] == ["clip_0000"]
    monkeypatch.setattr(datasets, "make_backend", real)
    assert record_clips(config, progress=False).written == 1


def test_cache_folders_are_named_after_their_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perception.training import EpisodeData, default_config

    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    version = backend_class("embedded").WORLD_VERSION
    cfg = default_config("lite", "smoke")
    cfg.episodes = EpisodeData()
    assert training_data.training_data_root(cfg) == tmp_path / "clips" / f"embedded-v{version}-64x128-7f-1clips-seed0"
    cfg.episodes = EpisodeData(clips=2, drives=1, drive_frames=9)
    assert training_data.training_data_root(cfg).name.endswith("-1clips-ep2-1x9drive-seed0")
    drives = LongDriveConfig(drives=2, frames=12, block=5, seed=7)
    assert training_data.drives_root(drives, (64, 128)) == tmp_path / "drives" / f"embedded-v{version}-64x128-12f-seed7"


def test_record_drives_records_episode_drives_and_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    lines: list[str] = []
    drives = training_data.record_drives(LongDriveConfig(drives=1, frames=3, block=2), (16, 32), log=lines.append)
    assert [(d.path.name, len(d), d.meta.extra["drive"]) for d in drives] == [("drive_0000", 3, "episode")]
    assert lines[0].startswith("1 clip(s) written to ") and "Road" in lines[1]


def test_record_drives_on_the_validation_town_keep_a_cache_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    config = LongDriveConfig(drives=1, frames=3, block=2)
    drives = training_data.record_drives(config, (16, 32), split="val")
    assert [(d.meta.split, d.meta.town, len(d)) for d in drives] == [
        ("val", backend_class("embedded").SPLITS["val"][0], 3)
    ]
    assert drives[0].path.parent.parent == training_data.drives_root(config, (16, 32), split="val")
    assert training_data.drives_root(config, (16, 32), split="val").name.endswith("-seed7-val")
    assert not training_data.drives_root(config, (16, 32)).exists()  # the test town's drives: another folder


def test_record_drives_of_another_kind_keep_a_cache_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    config = LongDriveConfig(drives=1, frames=3, block=2)
    drives = training_data.record_drives(config, (16, 32), split="val", drive="approach")
    assert [(d.path.name, len(d), d.meta.extra["drive"]) for d in drives] == [("drive_0000", 3, "approach")]
    root = training_data.drives_root(config, (16, 32), split="val", drive="approach")
    assert drives[0].path.parent.parent == root and "-approach-16x32-" in root.name
    assert not training_data.drives_root(config, (16, 32), split="val").exists()  # episode drives: another folder


def test_report_writer_and_text(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """The report library: report.json atomically in place (no .tmp left), pictures, and the tables as text."""
    torch.manual_seed(0)
    model = build_model("lite")
    clips = ClipStore(smoke_data).clips(split="test")
    report = write_report(model, clips, tmp_path / "r", torch.device("cpu"), corruptions=())
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == json.loads(json.dumps(report))
    assert not list((tmp_path / "r").glob(".*.tmp")) and (tmp_path / "r" / "pictures").is_dir()
    assert report["weights_config"]["preset"] == "lite" and set(report["results"]) == {"clean"}
    text = report_text(report)
    assert text.splitlines()[0].startswith("condition") and "temporal minus per-frame mIoU" in text
    assert "temporal ahead in" not in text  # no long drives, no long-drive table


CLIS = (
    "carla_gym.collect",
    "carla_gym.train_perception",
    "carla_gym.evaluate_perception",
    "agents.train_ppo",
    "agents.imitation",
    "agents.evaluate",
    "agents.convert_policy",
)


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules and names a file imports (relative imports resolved in its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("folder", ["carla_gym", "perception", "agents", "benchmarks"])
def test_no_module_imports_a_cli(folder: str) -> None:
    """Libraries and benchmarks reach recording and reports through the library modules, never a CLI's."""
    offenders = {
        str(p.relative_to(REPO)): sorted(set(CLIS) & _imported_modules(p)) for p in (REPO / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
