"""How result files and weights configs name a file or folder: not by one machine's absolute path."""

from __future__ import annotations

import os
from pathlib import Path


def portable_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies under it (a repository's files), else as `~/...`
    when it lies under the home folder (the recording caches), else absolute: the same file reads the same
    in a report written on any machine. A path is named as given before its symlinks are followed, so a
    `runs/` that links elsewhere still reads `runs/...`."""
    given = Path(os.path.abspath(Path(path).expanduser()))
    forms = (given, given.resolve())
    for base, prefix in ((Path.cwd(), Path()), (Path.home(), Path("~"))):
        for form in forms:
            for root in (base, base.resolve()):
                if form.is_relative_to(root):
                    return (prefix / form.relative_to(root)).as_posix()
    return forms[1].as_posix()
