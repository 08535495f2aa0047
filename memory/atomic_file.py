"""Crash-safe file replacement: readers see the old file or the new one, never a torn one.

Write a temporary file in the target's folder, fsync it, rename it over the target, fsync the folder (so the
rename itself survives a power cut). A crash before the rename leaves the old file as it was and at most a stray
``*.tmp`` file, which :func:`remove_stray_temps` clears.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with what ``write`` puts into the (binary) file handle it is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_atomic(source: Path, path: Path) -> None:
    """Put an already written file (in the same file system) in place of ``path``, durably."""
    with source.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, path)
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stray_temps(folder: Path) -> None:
    """Delete temp files a crash left behind in ``folder``."""
    for stray in folder.glob(f".*{TEMP_SUFFIX}"):
        stray.unlink(missing_ok=True)
