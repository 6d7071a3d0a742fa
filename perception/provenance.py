"""Where a measurement came from, for result files: the command that made it and the CPU it ran on."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from perception.portable_paths import portable_path

CPUINFO = Path("/proc/cpuinfo")


def command_line(argv: Sequence[str] | None = None, module: str | None = None) -> str:
    """The shell command that reruns this process: `python -m module ...` for a module, else `python script ...`;
    `argv` defaults to this process's arguments. The script and every absolute path among the arguments are
    named as `portable_path` names them (relative to the working directory, or `~/...`), so the command reads
    the same from any machine and still runs from the repository root. An option written `--name=/path` is
    written `--name PATH` (the shell expands `~` only at the start of a word)."""
    program = ["-m", module] if module else [portable_path(sys.argv[0])]
    args = [word for arg in (sys.argv[1:] if argv is None else argv) for word in _portable_words(arg)]
    return " ".join(_shell_word(word) for word in ["python", *program, *args])


def _portable_words(arg: str) -> list[str]:
    name, equals, value = arg.partition("=")
    if arg.startswith("--") and equals and os.path.isabs(value):
        return [name, portable_path(value)]
    return [portable_path(arg) if os.path.isabs(arg) else arg]


def _shell_word(word: str) -> str:
    # `~/` stays outside the quotes, where the shell expands it
    return "~/" + shlex.quote(word[2:]) if word.startswith("~/") else shlex.quote(word)


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name from /proc/cpuinfo on Linux, else what `platform` knows (often just the architecture)."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_vnni(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's VNNI instruction sets (int8 dot products, where int8 kernels gain most); 'no VNNI', or
    'VNNI unknown' where the flags cannot be read."""
    flags = _cpuinfo_field("flags", cpuinfo)
    if flags is None:
        return "VNNI unknown"
    return ", ".join(sorted({f for f in flags.split() if f in ("avx512_vnni", "avx_vnni")})) or "no VNNI"


def cpu_description(cpuinfo: Path = CPUINFO) -> str:
    """'N CPUs, model name (VNNI sets)': what a CPU timing depends on, in one line."""
    return f"{os.cpu_count()} CPUs, {cpu_name(cpuinfo)} ({cpu_vnni(cpuinfo)})"
