"""write_atomic: the new file whole or the old one untouched, no temporary file left, a plain file's mode."""

from __future__ import annotations

import os
import stat

import pytest

from perception.atomic_files import write_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "step-x.onnx"
    path.write_bytes(b"old")

    def fail(p):
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["step-x.onnx"]
    assert write_atomic(path, lambda p: p.write_bytes(b"new")) == path
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["step-x.onnx"]


def test_makes_the_folder_and_gives_the_mode_of_a_plain_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a" / "b.json", lambda p: p.write_text("{}"))
    finally:
        os.umask(umask)
    assert path.read_text() == "{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the 0600 of a temporary file
