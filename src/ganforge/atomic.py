"""Writing a file so that readers see the old one or the new one, never half of one, and never through a link.

Every file is written to a new temporary file in the same folder (created with
``O_EXCL``, so never through a symbolic link) and renamed over the old name,
which replaces a link rather than writing through it; a failed write (a full
disk, a read-only folder, Ctrl-C) removes the temporary file and leaves the old
file as it was. Used by the report, ``eval --json`` and a run's ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ganforge.errors import DataError


def write_file(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a new temporary file beside ``path``, then rename it to ``path``.

    The file gets the permissions a plain ``open`` would give it (temporary files are private).

    Raises:
        DataError: naming ``path``, for any OSError (full disk, read-only folder...).
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> Path:
    """:func:`write_file` of UTF-8 ``text``."""
    return write_file(path, lambda f: f.write(text.encode("utf-8")))
