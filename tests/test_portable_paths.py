"""perception.portable_paths: result files name paths relative to the working directory or the home folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.portable_paths import portable_path


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("repo/carla_gym/weights/lite", "carla_gym/weights/lite"),  # under the working directory
        ("repo", "."),
        ("home/.cache/carla_gym/clips/x", "~/.cache/carla_gym/clips/x"),  # under the home folder only
        ("elsewhere/data", None),  # neither: absolute
    ],
)
def test_portable_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, expected: str | None) -> None:
    (tmp_path / "repo").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "repo")
    path = tmp_path / where
    assert portable_path(path) == (expected or path.resolve().as_posix())
    assert portable_path(str(path)) == portable_path(path)


def test_a_relative_path_reads_the_same_as_its_absolute_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "repo").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "repo")
    assert portable_path("runs/v1/../v2/weights") == "runs/v2/weights"
    assert portable_path("~/x") == "~/x"


def test_a_symlinked_folder_under_the_working_directory_is_named_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "disk" / "v1").mkdir(parents=True)
    (tmp_path / "repo" / "runs").symlink_to(tmp_path / "disk")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "repo")
    assert portable_path("runs/v1") == "runs/v1"
    assert portable_path(tmp_path / "disk" / "v1") == (tmp_path / "disk" / "v1").resolve().as_posix()
