"""Checking output paths before any work is done, so that a bad ``--out`` fails in a second, not after an hour.

Every command that writes files calls one of these first:

* :func:`check_output_file` for a file (a PNG grid, a JSON report, ``metrics.jsonl``);
* :func:`check_output_dir` for a directory (``sample --files``, an inpainted folder, a run directory);
* :func:`check_folder_target` for a folder written beside its path and renamed into place (``export``);
* :func:`check_free_space` when the size of the output is known in advance.

Missing parent directories are fine (the writers create them) as long as the
nearest existing ancestor is a directory we can write into. Writability is
tested by creating and removing a temporary file rather than with
``os.access``, which says yes to root on a read-only mount. Every problem is a
:class:`ConfigError` naming the option, i.e. one line and exit code 2 from the CLI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ganforge.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself, or its closest ancestor that exists (``.`` for a relative path with none)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_writable_dir(directory: Path, option: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".ganforge-write-test-", dir=directory)
    except OSError as exc:
        raise ConfigError(option, f"cannot write into {directory} ({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)


def _check_parent(path: Path, option: str) -> None:
    """The directory that will hold ``path`` exists and is writable, or can be created."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise ConfigError(option, f"cannot create {path}: {ancestor} is a file, not a directory")
    _check_writable_dir(ancestor, option)


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check that a file can be written (or replaced) at ``path``; returns it as a Path.

    Raises:
        ConfigError: ``path`` is a directory, a parent is a file, or the
            directory (or an existing file) is not writable.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(option, f"{p} is a directory; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(option, f"{p} exists and is not writable")
    _check_parent(p, option)
    return p


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check that ``path`` is (or can be created as) a writable directory; returns it as a Path.

    Raises:
        ConfigError: ``path`` exists and is not a directory, a parent is a
            file, or the directory is not writable.
    """
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(option, f"{p} exists and is not a directory")
        _check_writable_dir(p, option)
    else:
        _check_parent(p, option)
    return p


def check_folder_target(path: str | os.PathLike, option: str) -> Path:
    """Check ``path`` for a folder that is written beside it and renamed into place; returns it as a Path.

    As :func:`check_output_dir`, and also: ``path`` is not a symbolic link, and the
    directory that holds it (where the temporary sibling is made) is writable.
    """
    p = Path(path)
    if p.is_symlink():
        raise ConfigError(option, f"{p} is a symbolic link; give the path of a real directory")
    check_output_dir(p, option)
    _check_parent(p, option)
    return p


def check_free_space(path: str | os.PathLike, need_bytes: int, option: str) -> None:
    """Refuse to start writing about ``need_bytes`` at ``path`` when the file system has less free."""
    where = _nearest_existing(Path(path))
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # no way to know: let the writes themselves fail
    if need_bytes > free:
        raise ConfigError(option, f"the output needs about {format_bytes(need_bytes)} but the file system "
                                  f"of {where} has {format_bytes(free)} free")


def format_bytes(n: float) -> str:
    """``1536 -> "1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
