"""How result files and weights configs name a file or folder: not by one machine's absolute path."""

from __future__ import annotations

from pathlib import Path


def portable_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies under it (a repository's files), else as `~/...`
    when it lies under the home folder (the recording caches), else absolute: the same file reads the same
    in a report written on any machine."""
    resolved = Path(path).expanduser().resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved.is_relative_to(cwd):
        return resolved.relative_to(cwd).as_posix()
    if resolved.is_relative_to(home):
        return (Path("~") / resolved.relative_to(home)).as_posix()
    return resolved.as_posix()
