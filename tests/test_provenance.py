"""perception.provenance: the command and the CPU that a result file records."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from perception.provenance import command_line, cpu_description, cpu_name, cpu_vnni

CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx512f {extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("argv", "module", "expected"),
    [
        (["--steps", "10"], "carla_gym.train_perception", "python -m carla_gym.train_perception --steps 10"),
        (["--out", "my runs/a"], "agents.evaluate", "python -m agents.evaluate --out 'my runs/a'"),
        ([], "agents.train_ppo", "python -m agents.train_ppo"),
    ],
)
def test_command_line_of_a_module_quotes_what_the_shell_needs(argv: list[str], module: str, expected: str) -> None:
    assert command_line(argv, module=module) == expected


def test_command_line_names_the_script_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "benchmarks" / "speed.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "--json", "out.json"])
    assert command_line() == "python benchmarks/speed.py --json out.json"


def test_command_line_names_absolute_paths_portably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "repo").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "repo")
    argv = ["--data", str(tmp_path / "home" / ".cache" / "my clips"), "--out", str(tmp_path / "repo" / "runs" / "a")]
    assert command_line(argv, module="m") == "python -m m --data ~/'.cache/my clips' --out runs/a"
    assert command_line(["--data", "/elsewhere/x"], module="m") == "python -m m --data /elsewhere/x"


def test_command_line_splits_an_option_written_with_equals_around_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = [f"--data={tmp_path / 'clips'}", "--lr=seg=1e-3", "--name=/elsewhere/x"]
    assert command_line(argv, module="m") == "python -m m --data ~/clips --lr=seg=1e-3 --name /elsewhere/x"


@pytest.mark.parametrize(
    ("extra", "vnni"),
    [("avx512_vnni avx_vnni", "avx512_vnni, avx_vnni"), ("avx512_vnni", "avx512_vnni"), ("avx2", "no VNNI")],
)
def test_cpu_name_and_vnni_come_from_cpuinfo(tmp_path: Path, extra: str, vnni: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert cpu_name(cpuinfo) == "AMD EPYC 9R14"
    assert cpu_vnni(cpuinfo) == vnni
    assert cpu_description(cpuinfo).endswith(f"CPUs, AMD EPYC 9R14 ({vnni})")


def test_without_cpuinfo_the_cpu_is_named_by_platform_and_vnni_is_unknown(tmp_path: Path) -> None:
    missing = tmp_path / "no-cpuinfo"
    assert cpu_name(missing) == (platform.processor() or platform.machine())
    assert cpu_vnni(missing) == "VNNI unknown"
