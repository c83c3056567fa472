"""Writing a file so that readers see the old one or the new one, never half of one, and never through a link.

Every file is written to a new temporary file in the same folder (created with
``O_EXCL``, so never through a symbolic link) and renamed over the old name,
which replaces a link rather than writing through it; a failed write (a full
disk, a read-only folder, Ctrl-C) removes the temporary file and leaves the old
file as it was. Used by the report, ``eval --json``, a run's ``config.yaml``, sample
grids, inpainted images and the metric caches.

A temporary sibling is named ``.NAME.tmp-PID-XXXX`` (files here, folders in
:mod:`ganforge.models.pretrained`): a writer killed before its rename (kill -9, a
power cut) leaves it behind, and the next write of ``NAME`` removes it once process
PID no longer runs (:func:`remove_stale_temporaries`). Whole folders are swapped in
by :func:`replace_dir` (checkpoints, exported models).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ganforge.errors import DataError


def write_file(path: Path, write: Callable[[BinaryIO], None], *, tidy: bool = True) -> Path:
    """Call ``write(f)`` on a new temporary file beside ``path``, then rename it to ``path``.

    The file gets the permissions a plain ``open`` would give it (temporary files are private).
    ``tidy`` first removes a killed writer's temporaries of ``path``, which lists the folder:
    a caller writing thousands of files into one folder tidies it once
    (:func:`remove_stale_temporaries_in`) and passes ``tidy=False``.

    Raises:
        DataError: naming ``path``, for any OSError (full disk, read-only folder...).
    """
    path = Path(path)
    tmp = None
    try:
        if tidy:
            remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DataError(path, f"cannot write ({exc.strerror or type(exc).__name__})") from None
        raise
    return path


def temporary_prefix(path: Path) -> str:
    """The name a temporary sibling of ``path`` starts with: ``.NAME.tmp-PID-`` (this process's PID)."""
    return f".{Path(path).name}.tmp-{os.getpid()}-"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` whose writer's process no longer runs; return them.

    A writer that still runs (this process included), another name's temporaries and
    symbolic links are left alone; a removal that fails is skipped (the write goes on).
    """
    path = Path(path)
    return _remove_stale(path.parent, re.escape(path.name))


def remove_stale_temporaries_in(folder: Path) -> list[Path]:
    """:func:`remove_stale_temporaries` for every name in ``folder`` at once."""
    return _remove_stale(Path(folder), r".+")


def _remove_stale(folder: Path, name: str) -> list[Path]:
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"\.{name}\.tmp-(\d+)-\w+")
    removed = []
    for sibling in sorted(folder.iterdir()):
        m = pattern.fullmatch(sibling.name)
        if m is None or sibling.is_symlink() or process_runs(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(sibling) if sibling.is_dir() else sibling.unlink()
            removed.append(sibling)
    return removed


def process_runs(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (ours counts; unknown means yes, to stay safe)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> Path:
    """:func:`write_file` of UTF-8 ``text``."""
    return write_file(path, lambda f: f.write(text.encode("utf-8")))


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into it) durable; a no-op where the file system refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


SWAPPED_OUT = ".old-"  # replace_dir parks a previous ``final`` as ``.old-NAME-PID`` between its two renames


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete directory ``tmp`` to ``final`` by rename; an existing ``final`` is swapped out first."""
    if final.exists():
        old = final.parent / f"{SWAPPED_OUT}{final.name}-{os.getpid()}"
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)  # put the previous version back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def restore_swapped_out(parked: Path, final: Path) -> None:
    """Tidy ``parked`` (``.old-NAME-PID``, left by a :func:`replace_dir` killed between its renames).

    It is renamed back to ``final`` when nothing took its place, so no saved work is lost;
    otherwise it is removed. Raises OSError when the rename or removal fails.
    """
    if not final.exists() and not final.is_symlink():
        os.replace(parked, final)
    else:
        shutil.rmtree(parked)
