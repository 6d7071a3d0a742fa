"""Files written whole or not at all: the project's weights, checkpoints, reports and caches."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write `path` by calling `write` on a temporary file in the same folder, then renaming it into place.

    A kill or an exception never leaves half a file at `path`: whatever was there stays until the new file
    is whole, and the temporary file is removed on failure. The file gets the mode a plain `open()` would
    give it (0666 less the umask), not the 0600 of a temporary file. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        plain_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def plain_mode(path: str | Path) -> None:
    """Give `path` the mode a plain `open()` or `mkdir()` would (0666 or 0777 less the umask).

    Temporary files and folders are made private (0600, 0700), and some writers (safetensors) make their files
    0600; renamed into place they would stay unreadable to anyone else sharing the results."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)
